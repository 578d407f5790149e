"""Durable partition storage: Kafka's segment layout, indexes, checkpoints, recovery, group commit.

Synchronous file I/O behind a small file-system seam (``fs.FileSystem``); the asyncio broker
calls it on its event loop, except ``FlushTicket.run`` which belongs on a worker thread.
"""

from cluster.storage.config import LogConfig
from cluster.storage.partition_log import FlushTicket, PartitionLog

__all__ = ["LogConfig", "PartitionLog", "FlushTicket"]
