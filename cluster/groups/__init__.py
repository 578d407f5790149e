"""The group coordinator as a sans-I/O state machine (classic rebalance protocol and committed offsets).

Everything here is pure: inputs are requests plus ``now_ms``, outputs are replies and records to append to
``__consumer_offsets``.  The asyncio shell that runs it lives in ``cluster/broker/group_coordinator.py``.
"""
