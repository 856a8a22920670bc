"""Helpers shared by the payment tests."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from bookstore.order_queue.store import QueueStore
from bookstore.pb import queue_pb2_grpc


@dataclass
class Queue:
    """A real order queue in process: its store, server and a stub on it."""

    store: QueueStore
    server: grpc.aio.Server
    stub: queue_pb2_grpc.OrderQueueAsyncStub
