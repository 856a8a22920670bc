"""An order executor replica: thin adapters around the Bully `Node`.

- the gRPC servicer: `Deliver` feeds `Node.on_message`; `Status` reports;
- a timer calling `Node.on_tick` (every TICK_S, or every heartbeat/2 while the
  node is steady: nothing of it falls due sooner);
- the leader's watch: a follower keeps a connection to its leader open and
  tells the node once it closes and cannot be opened again (`on_leader_lost`):
  a killed leader is noticed at once, with no message at all;
- a sender delivering `Outgoing` messages with short deadlines, fire and
  forget (a failure only means no reply, which the timeouts handle);
- the registration task: a freshly won leader asks the queue for an epoch;
- the work loop (work.py), only while leader with an epoch: recovery, then
  one Dequeue long poll at a time for as many orders as there are free slots
  (`execution_concurrency`), each order's two-phase commit in a task of its own.
  STALE_EPOCH or LEADER_ALIVE -> `on_fenced`; the queue unreachable for
  queue_unreachable_s -> `on_queue_unreachable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections import deque
from typing import Any, TypeAlias, cast

import grpc

from bookstore import grpcutil
from bookstore.backoff import Backoff
from bookstore.catalogue import Catalogue, load_catalogue
from bookstore.commitment.trace import CommitmentTrace
from bookstore.identity.policy import require_replica
from bookstore.order_executor.bully import (
    FOLLOWER,
    Kind,
    Message,
    Node,
    Outgoing,
    Step,
    Timings,
)
from bookstore.order_executor.crash import CrashAt
from bookstore.order_executor.transaction import TwoPhaseCommit
from bookstore.order_executor.work import Work
from bookstore.order_queue.client import LeaderCalls
from bookstore.order_queue.state import LeaderAlive, StaleEpoch
from bookstore.pb import common_pb2, executor_pb2, executor_pb2_grpc, queue_pb2, queue_pb2_grpc
from bookstore.settings import Settings
from bookstore.telemetry import metrics
from bookstore.timestamps import utc_iso

log = logging.getLogger(__name__)

SERVICE_NAME = "bookstore.executor.OrderExecutor"
Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpc ships no type hints)
RECENT_STEPS = 50
REGISTER_BACKOFF_FIRST_S = 0.05
REGISTER_BACKOFF_CAP_S = 1.0  # not past queue_unreachable_s by much: a cut-off leader steps down
QUEUE = "order-queue"
TICK_S = 0.05  # the timer while an election or a registration is on
LEADER_GONE_S = 0.3  # a leader's connection that closed and does not open again in this
LEADER_ALIVE_RETRY_S = 0.05  # a winner the queue refuses (LEADER_ALIVE) asks again after
# The queue's refusals that depose a leader: its epoch is over, or another leader
# holds the queue. A lost lease (LEASE_LOST) only ends the work on that order.
FENCED = frozenset({StaleEpoch.code, LeaderAlive.code})


class QueueAnswer(enum.Enum):
    """What a failed queue call means to the executor (result codes, not gRPC status)."""

    UNREACHABLE = "UNREACHABLE"  # the queue is down, slow or overloaded: try again
    FENCED = "FENCED"  # the queue refused my leadership
    REFUSED = "REFUSED"  # the queue refused this request only


def classify(exc: grpc.RpcError) -> tuple[QueueAnswer, str]:
    """The meaning of a failed queue call, and its reason (via grpcutil's translation)."""
    error = grpcutil.translate(QUEUE, exc)
    if isinstance(error, grpcutil.ServiceUnavailable):
        return QueueAnswer.UNREACHABLE, error.detail
    if error.code in FENCED:
        return QueueAnswer.FENCED, str(error)
    return QueueAnswer.REFUSED, str(error)


_KINDS = {
    Kind.ELECTION: executor_pb2.BullyMessage.ELECTION,
    Kind.ANSWER: executor_pb2.BullyMessage.ANSWER,
    Kind.COORDINATOR: executor_pb2.BullyMessage.COORDINATOR,
}
_FROM_PB = {v: k for k, v in _KINDS.items()}


def timings_from(settings: Settings) -> Timings:
    return Timings(
        heartbeat=settings.heartbeat_s,
        leader_silence=settings.leader_silence_s,
        failure_timeout=settings.failure_timeout_s,
        election_timeout=settings.election_timeout_s,
        coordinator_timeout=settings.coordinator_timeout_s,
        queue_unreachable=settings.queue_unreachable_s,
    )


def _crash_at(settings: Settings) -> CrashAt | None:
    """Test only: the 2PC's observer that kills this leader at one point of it."""
    return CrashAt(settings.test_crash_at, settings.data_dir) if settings.test_crash_at else None


class Executor:
    """One replica: the node, its timer, its sender and its work loop."""

    def __init__(
        self,
        settings: Settings,
        replica_id: int,
        clock: Any = time.monotonic,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.settings = settings
        self.replica_id = replica_id
        self.clock = clock
        self.timings = timings_from(settings)
        peers = [i for i in settings.order_executor_addresses if i != replica_id]
        self.steps: deque[executor_pb2.ElectionStep] = deque(maxlen=RECENT_STEPS)
        self.node = Node(replica_id, peers, self.timings, listener=self._on_step)
        # each coordinated order's two-phase-commit messages, for the cluster view
        self.commitments = CommitmentTrace()
        self._peer_channels: dict[int, grpc.aio.Channel] = {}
        self._peer_stubs: dict[int, executor_pb2_grpc.OrderExecutorAsyncStub] = {}
        self._queue_channel = grpcutil.channel(settings.order_queue_address)
        self.queue = cast(
            "queue_pb2_grpc.OrderQueueAsyncStub", queue_pb2_grpc.OrderQueueStub(self._queue_channel)
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._registering: asyncio.Task[None] | None = None
        # Paces every registration of this replica (retries and re-elections);
        # reset once it holds a fresh epoch, or follows a leader that announced one
        # (the contest that fenced it is settled: its next win is a new failover).
        self._register_backoff = Backoff(
            REGISTER_BACKOFF_FIRST_S, REGISTER_BACKOFF_CAP_S, jitter=0.9, immediate_first=True
        )
        self._probing: asyncio.Task[None] | None = None
        self._unsteady = asyncio.Event()  # wakes the slow timer
        self._watching: tuple[int, asyncio.Task[None]] | None = None
        self._leading = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._queue_ok_at = 0.0
        # Decisions and completions of concurrent orders share LeaderBatch calls.
        self.leader_calls = LeaderCalls(lambda: self.queue, settings.rpc_timeout_s)
        self.commit = TwoPhaseCommit(
            settings, self.queue, _crash_at(settings), self.commitments, self.leader_calls
        )
        catalogue = catalogue if catalogue is not None else load_catalogue()
        self.work = Work(
            self, settings, self.queue, self.commit, self.leader_calls, catalogue, clock
        )

    # -- the node's events -----------------------------------------------------

    def _on_step(self, step: Step) -> None:
        pb = executor_pb2.ElectionStep(
            at=utc_iso(),
            replica_id=step.replica_id,
            step=step.step,
            detail=step.detail,
            epoch=step.epoch,
        )
        self.steps.append(pb)
        if step.step == "called":
            metrics.ELECTIONS.inc()
        log.info(
            "election replica=%d step=%s epoch=%d role=%s leader=%s detail=%s",
            step.replica_id,
            step.step,
            step.epoch,
            self.node.role if hasattr(self, "node") else "-",
            (self.node.leader if hasattr(self, "node") else None) or "-",
            step.detail,
        )

    def _after(self, out: list[Outgoing]) -> None:
        """Send what the node produced; start registering or working as needed."""
        for o in out:
            self._send(o)
        if self._follows_a_leader():
            self._register_backoff.reset()
        if self.node.needs_registration and (self._registering is None or self._registering.done()):
            self._registering = self.spawn(self._register())
        if self.node.abstaining and (self._probing is None or self._probing.done()):
            self._probing = self.spawn(self._probe_queue())
        self._watch_leader()
        if not self.node.steady:
            self._unsteady.set()
        if self.node.is_working_leader:
            self._leading.set()
        else:
            self._leading.clear()

    def _follows_a_leader(self) -> bool:
        """Following a higher replica's COORDINATOR (not while cut off from the queue)."""
        node = self.node
        return node.role == FOLLOWER and node.leader is not None and not node.abstaining

    def handle(self, msg: Message) -> None:
        self._after(self.node.on_message(msg, self.clock()))

    def tick(self) -> None:
        self._after(self.node.on_tick(self.clock()))

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- sending ------------------------------------------------------------------

    # -- the leader's watch ----------------------------------------------------------

    def _watch_leader(self) -> None:
        """One watch, on the leader this replica follows (none while it follows nobody)."""
        leader = self.node.leader if self._follows_a_leader() else None
        if self._watching is not None:
            if self._watching[0] == leader and not self._watching[1].done():
                return
            self._watching[1].cancel()
            self._watching = None
        if leader is not None:
            self._watching = (leader, self.spawn(self._watch(leader)))

    async def _watch(self, leader: int) -> None:
        """Wait, without a message, until the leader's connection closes; then, if it
        does not open again within LEADER_GONE_S, the leader is gone."""
        self._stub(leader)
        channel = self._peer_channels[leader]
        ready = grpc.ChannelConnectivity.READY
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(channel.channel_ready(), self.timings.leader_silence)
        while channel.get_state(try_to_connect=True) == ready:
            await channel.wait_for_state_change(ready)
            try:
                alive = await asyncio.wait_for(grpcutil.reconnects(channel), LEADER_GONE_S)
            except TimeoutError:
                alive = False
            if not alive:
                self._after(self.node.on_leader_lost(leader, self.clock()))
                return

    def _stub(self, peer: int) -> executor_pb2_grpc.OrderExecutorAsyncStub:
        stub = self._peer_stubs.get(peer)
        if stub is None:
            channel = grpcutil.channel(self.settings.order_executor_addresses[peer])
            self._peer_channels[peer] = channel
            stub = cast(
                "executor_pb2_grpc.OrderExecutorAsyncStub",
                executor_pb2_grpc.OrderExecutorStub(channel),
            )
            self._peer_stubs[peer] = stub
        return stub

    def _send(self, out: Outgoing) -> None:
        m = out.message
        pb = executor_pb2.BullyMessage(
            kind=_KINDS[m.kind], sender=m.sender, leader=m.leader, epoch=m.epoch, nonce=m.nonce
        )
        self.spawn(self._deliver(out.to, pb))

    async def _deliver(self, peer: int, pb: executor_pb2.BullyMessage) -> None:
        # Fire and forget: a lost message is what the timeouts are for.
        timeout = max(0.1, min(0.5, self.timings.failure_timeout))
        with contextlib.suppress(grpc.RpcError, asyncio.CancelledError):
            await self._stub(peer).Deliver(pb, timeout=timeout)

    # -- the queue: registration ----------------------------------------------------

    async def _register(self) -> None:
        started = self.clock()
        pause = self._register_backoff.next()
        while self.node.needs_registration:
            await asyncio.sleep(pause)
            if not self.node.needs_registration:
                return
            try:
                reply = await self.queue.RegisterLeader(
                    queue_pb2.RegisterLeaderRequest(replica_id=self.replica_id), timeout=0.5
                )
            except grpc.aio.AioRpcError as exc:
                answer, reason = classify(exc)
                if answer is QueueAnswer.UNREACHABLE:
                    if self.clock() - started >= self.timings.queue_unreachable:
                        self._after(self.node.on_queue_unreachable(self.clock()))
                        return
                    pause = self._register_backoff.next()
                    continue
                if self._leader_may_be_gone(reason, started):
                    pause = LEADER_ALIVE_RETRY_S
                    continue
                self._after(self.node.on_fenced(self.clock(), reason))
                return
            self._queue_ok_at = self.clock()
            started = self.clock()
            # Normally done now; a stale grant leaves the node asking again.
            self._after(self.node.on_registered(reply.epoch, self.clock()))
            if self.node.is_working_leader:
                self._register_backoff.reset()
                return
            pause = self._register_backoff.next()

    def _leader_may_be_gone(self, reason: str, started: float) -> bool:
        """LEADER_ALIVE within failure_timeout of my first ask: the queue keeps a
        leader that called it that long, and mine may have died just before (its
        connection told me at once); ask again before standing down."""
        if not reason.startswith(LeaderAlive.code):
            return False
        waited: float = self.clock() - started
        return waited < self.settings.failure_timeout_s + LEADER_GONE_S

    async def _probe_queue(self) -> None:
        """While abstaining, ask the queue how it is until it answers."""
        while self.node.abstaining:
            await asyncio.sleep(0.2)
            try:
                await self.queue.Status(common_pb2.Empty(), timeout=0.3)
            except grpc.aio.AioRpcError:
                continue
            self._queue_ok_at = self.clock()
            self._after(self.node.on_queue_reachable(self.clock()))
            return

    # -- the queue: the work loop -------------------------------------------------

    # -- what the work loops (work.py) need of the replica ----------------------

    @property
    def epoch(self) -> int:
        return self.node.epoch

    async def leading(self) -> int:
        """Wait until this replica leads with an epoch; that epoch."""
        while True:
            await self._leading.wait()
            if self.node.is_working_leader:
                return self.node.epoch
            self._leading.clear()

    def queue_failed(self, exc: grpc.aio.AioRpcError, epoch: int) -> bool:
        """Report a queue error to the node; True when the caller should stop."""
        answer, reason = classify(exc)
        if answer is QueueAnswer.UNREACHABLE:
            if self.clock() - self._queue_ok_at >= self.timings.queue_unreachable:
                self._after(self.node.on_queue_unreachable(self.clock()))
                return True
            return False
        self.queue_answered()
        if answer is QueueAnswer.FENCED:
            self.fenced(epoch, reason)
        return True

    def queue_answered(self) -> None:
        self._queue_ok_at = self.clock()

    def fenced(self, epoch: int, reason: str) -> None:
        # Only a refusal of the epoch I still hold deposes me (not a late reply
        # to a request of an earlier reign).
        if self.node.is_working_leader and self.node.epoch == epoch:
            self._after(self.node.on_fenced(self.clock(), reason))

    # -- lifecycle ----------------------------------------------------------------

    async def tick_loop(self) -> None:
        steady = max(TICK_S, self.timings.heartbeat / 2)
        while True:
            self.tick()
            if not self.node.steady:
                await asyncio.sleep(TICK_S)
                continue
            self._unsteady.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._unsteady.wait(), steady)

    def start(self) -> None:
        self._after(self.node.start(self.clock()))
        self._loops = [
            asyncio.create_task(self.tick_loop(), name="bully-tick"),
        ]
        self._loops.append(asyncio.create_task(self.work.loop(), name="work-loop"))

    async def close(self) -> None:
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        for task in [*self._loops, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.leader_calls.close()
        await self.commit.close()
        for channel in [*self._peer_channels.values(), self._queue_channel]:
            await channel.close()

    def status(self) -> executor_pb2.ExecutorStatus:
        return executor_pb2.ExecutorStatus(
            replica_id=self.replica_id,
            role=self.node.role,
            leader_id=self.node.leader or 0,
            epoch=self.node.epoch,
            pid=os.getpid(),
            executed=self.work.executed,
            recent_steps=list(self.steps),
        )


class OrderExecutorServicer(executor_pb2_grpc.OrderExecutorServicer):
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def Deliver(
        self, request: executor_pb2.BullyMessage, context: Context
    ) -> common_pb2.Empty:
        # The policy admits only executors; a message must also come from the
        # replica it names, so no replica can speak (and lead) for another.
        await require_replica(context, "order-executor", request.sender)
        kind = _FROM_PB.get(request.kind)
        if kind is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "BAD_REQUEST: unknown kind")
        else:
            self.executor.handle(
                Message(kind, request.sender, request.leader, request.epoch, request.nonce)
            )
        return common_pb2.Empty()

    async def Status(
        self, request: common_pb2.Empty, context: Context
    ) -> executor_pb2.ExecutorStatus:
        return self.executor.status()

    async def Commitment(
        self, request: common_pb2.OrderId, context: Context
    ) -> executor_pb2.CommitmentLog:
        steps = self.executor.commitments.steps(request.value)
        return executor_pb2.CommitmentLog(
            replica_id=self.executor.replica_id,
            steps=[
                executor_pb2.CommitmentStep(
                    at=s.at,
                    kind=s.kind,
                    sender=s.sender,
                    receiver=s.receiver,
                    detail=s.detail,
                    epoch=s.epoch,
                )
                for s in steps
            ],
        )


def create_server(bind: str, executor: Executor) -> tuple[grpc.aio.Server, Any, int]:
    servicer = OrderExecutorServicer(executor)
    return grpcutil.create_server(
        bind,
        lambda server: executor_pb2_grpc.add_OrderExecutorServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )


async def serve(settings: Settings, replica_id: int | None = None) -> None:
    if replica_id is None:
        raise ValueError("order-executor needs a replica id")
    bind = settings.bind_address("order-executor", replica_id)
    executor = Executor(settings, replica_id)
    server, health, port = create_server(bind, executor)
    label = f"order-executor {replica_id} on {bind} (port {port})"
    try:
        await grpcutil.serve(
            server, health, [SERVICE_NAME], label=label, grace_s=0.5, start=executor.start
        )
    finally:
        await executor.close()
