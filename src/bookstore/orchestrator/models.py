"""The checkout request and response shapes (the course's bookstore API).

Every field is optional, as in the course spec: business rules, not the
schema, decide what is acceptable. Types are strict (a quantity of "2" is a
400 naming the field); unknown fields are ignored; `termsAccepted` (what the
course page sends) is accepted beside `termsAndConditionsAccepted`.

Every text field has a length limit (README, "Limits of a checkout"): a longer one
is a 400 naming the field ("userComment: at most 1000 characters"), so no client can
make the orchestrator keep, or the services exchange, megabytes for one order.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

# The length limits of the text fields, in characters.
Code = Annotated[StrictStr, Field(max_length=30)]  # card number, expiry, CVV
Short = Annotated[StrictStr, Field(max_length=100)]  # codes, client metadata
Name = Annotated[StrictStr, Field(max_length=200)]  # names, contacts, address lines
Title = Annotated[StrictStr, Field(max_length=300)]  # a book's title
Long = Annotated[StrictStr, Field(max_length=1000)]  # the comment, the gift message
Url = Annotated[StrictStr, Field(max_length=2000)]  # the referrer
MAX_PREFERENCES = 20  # entries of notificationPreferences


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class User(_Model):
    name: Name | None = None
    contact: Name | None = None


class CreditCard(_Model):
    number: Code | None = None
    expirationDate: Code | None = None
    cvv: Code | None = None


class Item(_Model):
    name: Title | None = None
    bookId: Short | None = None
    quantity: StrictInt | None = None


class BillingAddress(_Model):
    street: Name | None = None
    city: Name | None = None
    state: Name | None = None
    zip: Name | None = None
    country: Name | None = None


class Device(_Model):
    type: Short | None = None
    model: Short | None = None
    os: Short | None = None


class Browser(_Model):
    name: Short | None = None
    version: Short | None = None


class CheckoutRequest(_Model):
    user: User | None = None
    creditCard: CreditCard | None = None
    userComment: Long | None = None
    items: list[Item] | None = None
    discountCode: Short | None = None
    shippingMethod: Short | None = None
    giftMessage: Long | None = None
    billingAddress: BillingAddress | None = None
    giftWrapping: StrictBool | None = None
    termsAndConditionsAccepted: StrictBool | None = None
    termsAccepted: StrictBool | None = None  # what the course page sends
    notificationPreferences: Annotated[list[Short], Field(max_length=MAX_PREFERENCES)] | None = None
    device: Device | None = None
    browser: Browser | None = None
    appVersion: Short | None = None
    screenResolution: Short | None = None
    referrer: Url | None = None
    deviceLanguage: Short | None = None

    @property
    def terms_accepted(self) -> bool:
        return bool(self.termsAndConditionsAccepted or self.termsAccepted)


class SuggestedBook(_Model):
    bookId: str
    title: str
    author: str


class Execution(_Model):
    state: str  # "queued" | "leased" (an executor is working on it) | "executed"
    executor: int | None = None
    epoch: int | None = None
    sequence: int | None = None
    executedAt: str | None = None


class OrderStatusResponse(_Model):
    orderId: str
    status: str  # exactly "Order Approved" or "Order Rejected"
    suggestedBooks: list[SuggestedBook] = Field(default_factory=list)
    reason: str | None = None
    vectorClock: list[int] | None = None
    execution: Execution | None = None


class ErrorBody(_Model):
    code: str
    message: str


class ErrorResponse(_Model):
    error: ErrorBody
