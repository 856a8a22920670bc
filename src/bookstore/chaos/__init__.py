"""Breaking the system on purpose: message faults between processes (`rules`,
`filter`), process faults through the launcher (`control`), a load generator and
named scenarios with their audit (`load`, `scenarios`). Off unless `bookstore up
--chaos` or BOOKSTORE_CHAOS=1.
"""
