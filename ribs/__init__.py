"""ribs: the pure routing core — route values, tables, best path, policy and the FIB plan.

Nothing under this package does IO, reads the clock or imports asyncio, sockets, subprocess or
pyroute2: time comes in as ``now`` and deadlines go out (a test enforces it).
"""
