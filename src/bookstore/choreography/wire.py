"""The node's actions as protobuf messages: the one place they are built."""

from __future__ import annotations

from bookstore import vclock
from bookstore.choreography.events import EventResult
from bookstore.choreography.protocol import AckCancel, AckFinalize, SendClock
from bookstore.pb import checkout_pb2, common_pb2
from bookstore.vclock import Clock


def clock_update(
    send: SendClock, sender: str, ai_spent_s: float, trace_context: str
) -> checkout_pb2.ClockUpdate:
    return checkout_pb2.ClockUpdate(
        order_id=common_pb2.OrderId(value=send.order_id),
        event=send.event,
        sender=sender,
        clock=vclock.to_pb(send.clock),
        ai_spent_s=ai_spent_s,
        trace_context=trace_context,
    )


def event_report(
    order_id: str, event: str, service: str, clock: Clock, result: EventResult, duration_ms: float
) -> checkout_pb2.ParticipantMessage:
    report = checkout_pb2.EventReport(
        order_id=common_pb2.OrderId(value=order_id),
        event=event,
        service=service,
        clock=vclock.to_pb(clock),
        ok=result.ok,
        reason=result.reason,
        suggestions=result.suggestions,
        answered_by=result.answered_by,
        duration_ms=duration_ms,
        payment_token=result.payment_token,
    )
    return checkout_pb2.ParticipantMessage(event=report)


def acknowledgement(ack: AckCancel | AckFinalize) -> checkout_pb2.ParticipantMessage:
    order_id = common_pb2.OrderId(value=ack.order_id)
    clock = vclock.to_pb(ack.clock)
    if isinstance(ack, AckCancel):
        return checkout_pb2.ParticipantMessage(
            cancelled=checkout_pb2.CancelAck(order_id=order_id, clock=clock)
        )
    return checkout_pb2.ParticipantMessage(
        finalized=checkout_pb2.FinalizeAck(
            order_id=order_id, consistent=ack.consistent, clock=clock, error=ack.error
        )
    )
