"""Deterministic simulation: the system's protocol cores under one seeded scheduler.

`bookstore simulate` runs the choreography nodes, the checkout flow, the queue's
rules, four Bully executors with their 2PC coordinators, three books-database
replicas and payment's participant in one process, on simulated time, network
and disks, injects faults from the seed and checks the invariants after every
step (README, "Deterministic simulation").
"""
