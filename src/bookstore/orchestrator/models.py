"""The checkout request and response shapes (the course's bookstore API).

Every field is optional, as in the course spec: business rules, not the
schema, decide what is acceptable. Types are strict (a quantity of "2" is a
400 naming the field); unknown fields are ignored; `termsAccepted` (what the
course page sends) is accepted beside `termsAndConditionsAccepted`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class User(_Model):
    name: StrictStr | None = None
    contact: StrictStr | None = None


class CreditCard(_Model):
    number: StrictStr | None = None
    expirationDate: StrictStr | None = None
    cvv: StrictStr | None = None


class Item(_Model):
    name: StrictStr | None = None
    bookId: StrictStr | None = None
    quantity: StrictInt | None = None


class BillingAddress(_Model):
    street: StrictStr | None = None
    city: StrictStr | None = None
    state: StrictStr | None = None
    zip: StrictStr | None = None
    country: StrictStr | None = None


class Device(_Model):
    type: StrictStr | None = None
    model: StrictStr | None = None
    os: StrictStr | None = None


class Browser(_Model):
    name: StrictStr | None = None
    version: StrictStr | None = None


class CheckoutRequest(_Model):
    user: User | None = None
    creditCard: CreditCard | None = None
    userComment: StrictStr | None = None
    items: list[Item] | None = None
    discountCode: StrictStr | None = None
    shippingMethod: StrictStr | None = None
    giftMessage: StrictStr | None = None
    billingAddress: BillingAddress | None = None
    giftWrapping: StrictBool | None = None
    termsAndConditionsAccepted: StrictBool | None = None
    termsAccepted: StrictBool | None = None  # what the course page sends
    notificationPreferences: list[StrictStr] | None = None
    device: Device | None = None
    browser: Browser | None = None
    appVersion: StrictStr | None = None
    screenResolution: StrictStr | None = None
    referrer: StrictStr | None = None
    deviceLanguage: StrictStr | None = None

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
