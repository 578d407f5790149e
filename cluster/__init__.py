"""kraftpy: a replicated, Kafka-compatible event-streaming cluster written in Python.

The package is layered (see README "Layout"): ``core`` holds value types and error codes,
``wire`` the Kafka protocol codecs and RecordBatch handling, ``storage`` the partition log,
``replication`` the pure per-partition state machines, ``transport`` the network adapters,
``broker`` the asyncio shell that glues them, and ``cli`` the command line.
"""

__version__ = "0.1.0"
