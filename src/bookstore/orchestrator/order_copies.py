"""The copy of an order each checkout service gets, with card data only where it is needed.

Transaction verification gets the full card (number, expiry, CVV) to check it; fraud
detection a `CardSummary` (brand, BIN, last four, expiry and the keyed fingerprint);
suggestions nothing of the card.
"""

from __future__ import annotations

from bookstore.cards import summarize_card
from bookstore.choreography.events import FD, SUG, TV
from bookstore.orchestrator.models import BillingAddress, CheckoutRequest
from bookstore.pb import checkout_pb2, common_pb2

INT32_MAX = 2**31 - 1


def order_copies(order_id: str, request: CheckoutRequest) -> dict[str, checkout_pb2.OrderData]:
    """Service name -> the order as that service gets it."""
    base = _shared(order_id, request)
    card = request.creditCard
    number = (card.number or "") if card else ""
    expiry = (card.expirationDate or "") if card else ""
    tv = checkout_pb2.OrderData()
    tv.CopyFrom(base)
    tv.card.CopyFrom(
        checkout_pb2.Card(number=number, expiration=expiry, cvv=(card.cvv or "") if card else "")
    )
    fd = checkout_pb2.OrderData()
    fd.CopyFrom(base)
    fd.card_summary.CopyFrom(summarize_card(number, expiry))
    return {TV: tv, FD: fd, SUG: base}


def _shared(order_id: str, request: CheckoutRequest) -> checkout_pb2.OrderData:
    """What every service gets: the order without any card data."""
    user = request.user
    data = checkout_pb2.OrderData(
        order_id=common_pb2.OrderId(value=order_id),
        items=[
            common_pb2.OrderItem(
                book_id=item.bookId or "",
                title=item.name or "",
                quantity=max(-INT32_MAX, min(INT32_MAX, item.quantity or 0)),
            )
            for item in request.items or []
        ],
        customer=checkout_pb2.Customer(
            name=(user.name or "") if user else "", contact=(user.contact or "") if user else ""
        ),
        terms_accepted=request.terms_accepted,
        user_comment=request.userComment or "",
        shipping_method=request.shippingMethod or "",
        discount_code=request.discountCode or "",
        gift_message=request.giftMessage or "",
        gift_wrapping=bool(request.giftWrapping),
        client=_client(request),
    )
    if request.billingAddress is not None:
        data.billing_address.CopyFrom(_address(request.billingAddress))
    return data


def _client(request: CheckoutRequest) -> checkout_pb2.ClientInfo:
    device = request.device
    browser = request.browser
    return checkout_pb2.ClientInfo(
        device_type=(device.type or "") if device else "",
        device_model=(device.model or "") if device else "",
        device_os=(device.os or "") if device else "",
        browser_name=(browser.name or "") if browser else "",
        browser_version=(browser.version or "") if browser else "",
        app_version=request.appVersion or "",
        screen_resolution=request.screenResolution or "",
        referrer=request.referrer or "",
        device_language=request.deviceLanguage or "",
    )


def _address(address: BillingAddress) -> checkout_pb2.Address:
    return checkout_pb2.Address(
        street=address.street or "",
        city=address.city or "",
        state=address.state or "",
        zip=address.zip or "",
        country=address.country or "",
    )
