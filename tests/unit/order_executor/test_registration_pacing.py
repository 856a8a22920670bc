"""The executor paces its registrations with the queue across re-elections, and a
replica that followed a leader since its last refusal registers at once when that
leader fails (no queue or peers needed: both are stand-ins here)."""

from __future__ import annotations

import grpc

from bookstore.backoff import Backoff
from bookstore.order_executor.bully import Kind, Message, Outgoing
from bookstore.order_executor.service import (
    LEADER_ALIVE_RETRY_S,
    LEADER_GONE_S,
    REGISTER_BACKOFF_CAP_S,
    REGISTER_BACKOFF_FIRST_S,
    Executor,
)
from bookstore.pb import queue_pb2
from bookstore.settings import Settings

NOWHERE = "127.0.0.1:1"  # nothing listens there; the executor sends nothing anyway
SETTINGS = Settings(
    tls=False,
    order_queue_address=NOWHERE,
    order_executor_addresses={i: NOWHERE for i in (1, 2, 3, 4)},
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Pacing(Backoff):
    """The executor's registration back-off, remembering every delay it waited."""

    def __init__(self) -> None:
        super().__init__(
            REGISTER_BACKOFF_FIRST_S, REGISTER_BACKOFF_CAP_S, jitter=0.9, immediate_first=True
        )
        self.waited: list[float] = []

    def next(self) -> float:
        delay = super().next()
        self.waited.append(delay)
        return delay


class Queue:
    """RegisterLeader refused (LEADER_ALIVE) `refusals` times, then granted. Each
    refusal takes `takes` seconds of `clock` (by default past the executor's retries:
    a higher leader alive all along)."""

    def __init__(self, refusals: int, clock: Clock | None = None, takes: float = 0.0) -> None:
        self.refusals = refusals
        self.epoch = 1
        self.asked = 0
        self.clock = clock
        self.takes = takes or SETTINGS.failure_timeout_s + LEADER_GONE_S + 0.01

    async def RegisterLeader(
        self, request: queue_pb2.RegisterLeaderRequest, timeout: float
    ) -> queue_pb2.RegisterLeaderReply:
        self.asked += 1
        if self.asked <= self.refusals:
            if self.clock is not None:
                self.clock.now += self.takes
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.FAILED_PRECONDITION,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details=f"LEADER_ALIVE: replica 4 holds epoch {self.epoch}",
            )
        self.epoch += 1
        return queue_pb2.RegisterLeaderReply(epoch=self.epoch)


def replica_3(clock: Clock, queue: Queue) -> tuple[Executor, Pacing]:
    executor = Executor(SETTINGS, 3, clock=clock)
    pacing = Pacing()
    executor.queue = queue  # type: ignore[assignment]
    executor._register_backoff = pacing
    sent: list[Outgoing] = []
    executor._send = sent.append  # type: ignore[method-assign]
    return executor, pacing


async def win_and_ask(executor: Executor, clock: Clock, queue: Queue) -> None:
    """From a candidate: no ANSWER from 4, so win, and wait for the queue's answer."""
    asked = queue.asked
    clock.now += SETTINGS.election_timeout_s
    executor.tick()
    assert executor.node.needs_registration
    registering = executor._registering
    assert registering is not None
    await registering  # ends with the queue's answer: refused (fenced) or granted
    assert queue.asked == asked + 1


async def test_refused_registrations_are_paced_until_a_leader_is_followed() -> None:
    clock = Clock()
    queue = Queue(refusals=4, clock=clock)
    executor, pacing = replica_3(clock, queue)
    try:
        executor._after(executor.node.start(clock()))
        # Cut off from 4 but not from the queue: it wins, is refused, stands again.
        for _ in range(4):
            await win_and_ask(executor, clock, queue)
            assert executor.node.role == "follower" and executor.node.leader is None
            clock.now += SETTINGS.failure_timeout_s
            executor.tick()
        assert pacing.waited[0] == 0.0
        assert all(d >= REGISTER_BACKOFF_FIRST_S for d in pacing.waited[1:])
        assert len(pacing.waited) == 4

        # 4 reaches it: it follows 4's epoch. Then 4 fails: this failover asks at once.
        executor.handle(Message(Kind.COORDINATOR, 4, leader=4, epoch=queue.epoch))
        assert executor.node.leader == 4
        clock.now += SETTINGS.leader_silence_s
        executor.tick()
        assert executor.node.role == "candidate"
        await win_and_ask(executor, clock, queue)
        assert pacing.waited[4:] == [0.0]
        assert executor.node.is_working_leader and executor.node.epoch == queue.epoch
    finally:
        await executor.close()


async def test_a_replica_that_never_followed_keeps_its_pacing() -> None:
    clock = Clock()
    queue = Queue(refusals=3, clock=clock)
    executor, pacing = replica_3(clock, queue)
    try:
        executor._after(executor.node.start(clock()))
        for _ in range(3):
            await win_and_ask(executor, clock, queue)
            clock.now += SETTINGS.failure_timeout_s
            executor.tick()
        await win_and_ask(executor, clock, queue)
        assert pacing.waited[0] == 0.0
        assert all(d >= REGISTER_BACKOFF_FIRST_S for d in pacing.waited[1:])
        assert executor.node.is_working_leader
    finally:
        await executor.close()


async def test_a_winner_asks_again_while_the_queue_still_counts_a_gone_leader() -> None:
    """The leader's connection closed: the queue keeps it for failure_timeout after
    its last call, so the winner's first asks are refused; it asks again, quickly,
    and gets the epoch without standing down."""
    clock = Clock()
    queue = Queue(refusals=3, clock=clock, takes=LEADER_ALIVE_RETRY_S)
    executor, _ = replica_3(clock, queue)
    try:
        executor._after(executor.node.start(clock()))
        clock.now += SETTINGS.election_timeout_s
        executor.tick()
        registering = executor._registering
        assert registering is not None
        await registering
        assert queue.asked == 4
        assert executor.node.is_working_leader and executor.node.epoch == queue.epoch
        assert not any(s.step == "stepped-down" for s in executor.node.steps)
    finally:
        await executor.close()
