"""The high watermark checkpoint of a log directory (Kafka's ``replication-offset-checkpoint``).

A replica that restarts must know which of its offsets were committed: a follower uses it as the floor it never
truncates below, and a replica elected leader starts its high watermark there instead of at zero (which would
hide committed data from consumers until every ISR member fetched again).  Kafka's text format: a version line
(0), a count line, then ``topic partition offset`` per line.  Written atomically (temporary file, fsync,
rename, directory fsync) every ``replica.high.watermark.checkpoint.interval.ms`` and at shutdown.  The value is
a hint bounded by each log's end offset on load, so a stale file is harmless.
"""

from __future__ import annotations

import logging
import os

from cluster.storage.fs import LOCAL_FS

log = logging.getLogger("cluster.storage.hw_checkpoint")

CHECKPOINT_FILE = "replication-offset-checkpoint"
VERSION = 0


def read_high_watermarks(log_dir: str) -> dict[tuple[str, int], int]:
    """The checkpointed high watermarks; {} when the file is missing or unreadable (logged)."""
    path = os.path.join(log_dir, CHECKPOINT_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.error("cannot read %s: %s; high watermarks start at 0", path, exc)
        return {}
    try:
        if int(lines[0]) != VERSION:
            raise ValueError(f"version {lines[0]}")
        count = int(lines[1])
        entries = {}
        for line in lines[2:2 + count]:
            topic, partition, offset = line.rsplit(" ", 2)
            entries[(topic, int(partition))] = int(offset)
        if len(entries) != count:
            raise ValueError(f"{len(entries)} entries, header says {count}")
        return entries
    except (ValueError, IndexError) as exc:
        log.error("ignoring malformed %s (%s); high watermarks start at 0", path, exc)
        return {}


def write_high_watermarks(log_dir: str, high_watermarks: dict[tuple[str, int], int]) -> None:
    path = os.path.join(log_dir, CHECKPOINT_FILE)
    body = [str(VERSION), str(len(high_watermarks))]
    body += [f"{topic} {partition} {offset}" for (topic, partition), offset in sorted(high_watermarks.items())]
    LOCAL_FS.write_file_atomically(path, ("\n".join(body) + "\n").encode())
