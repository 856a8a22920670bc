"""Two-phase commit for one order, as pure state machines (no sockets, no clocks).

`participant` holds the life cycle every resource manager shares (prepared,
committed, aborted; fenced by the coordinator's epoch); `coordinator` drives
one order's transaction across the participants. The payment ledger and the
books database are participants; the leader executor is the coordinator and
the queue keeps its decision log.
"""
