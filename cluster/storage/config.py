"""Per-topic log configuration (Kafka's LogConfig), with Kafka's topic-level key names.

The values are the few that change how a partition log behaves on disk: when segments roll, how
long data is kept, how dense the indexes are.  Defaults are Kafka's.  ``from_topic_configs``
accepts the names users type (``segment.bytes``, ``retention.ms``, ...) so the broker can build a
LogConfig straight from committed topic configs; a bad value fails with the key in the message.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["LogConfig", "TOPIC_CONFIG_KEYS"]

_TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")

# Kafka topic config name -> LogConfig field.
TOPIC_CONFIG_KEYS = {
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "index.interval.bytes": "index_interval_bytes",
    "max.message.bytes": "max_message_bytes",
    "message.timestamp.type": "message_timestamp_type",
    "file.delete.delay.ms": "file_delete_delay_ms",
    "segment.jitter.ms": "segment_jitter_ms",
    "segment.index.bytes": "segment_index_bytes",
    "cleanup.policy": "cleanup_policy",
    "delete.retention.ms": "delete_retention_ms",
    "min.compaction.lag.ms": "min_compaction_lag_ms",
    "min.cleanable.dirty.ratio": "min_cleanable_dirty_ratio",
}

_CLEANUP_POLICIES = ("delete", "compact")


@dataclass(frozen=True)
class LogConfig:
    segment_bytes: int = 1073741824
    segment_ms: int = 604800000
    retention_ms: int = 604800000  # -1 = keep forever
    retention_bytes: int = -1  # -1 = no size limit
    index_interval_bytes: int = 4096
    max_message_bytes: int = 1048588
    message_timestamp_type: str = "CreateTime"
    file_delete_delay_ms: int = 60000  # accepted for compatibility; files are deleted at once
    segment_jitter_ms: int = 0
    segment_index_bytes: int = 10485760  # bounds entries per segment index; a full index rolls
    # How often a flush also rewrites the recovery-point file (Kafka's
    # log.flush.offset.checkpoint.interval.ms); a stale file only means a longer recovery.
    recovery_point_checkpoint_interval_ms: int = 60000
    # Log compaction (see cleaner.py): "delete" applies retention.ms/bytes, "compact" keeps the
    # latest record per key; a topic may have both.
    cleanup_policy: tuple[str, ...] = ("delete",)
    delete_retention_ms: int = 86400000  # how long tombstones survive after their batch was cleaned
    min_compaction_lag_ms: int = 0
    min_cleanable_dirty_ratio: float = 0.5

    def __post_init__(self) -> None:
        _require(self.segment_bytes >= 14 + 61, "segment.bytes", self.segment_bytes)
        _require(self.segment_ms >= 1, "segment.ms", self.segment_ms)
        _require(self.retention_ms >= -1, "retention.ms", self.retention_ms)
        _require(self.retention_bytes >= -1, "retention.bytes", self.retention_bytes)
        _require(self.index_interval_bytes >= 0, "index.interval.bytes", self.index_interval_bytes)
        _require(self.max_message_bytes >= 0, "max.message.bytes", self.max_message_bytes)
        _require(
            self.message_timestamp_type in _TIMESTAMP_TYPES,
            "message.timestamp.type",
            self.message_timestamp_type,
        )
        _require(self.segment_jitter_ms >= 0, "segment.jitter.ms", self.segment_jitter_ms)
        _require(self.segment_index_bytes >= 8, "segment.index.bytes", self.segment_index_bytes)
        _require(
            isinstance(self.cleanup_policy, tuple)
            and all(p in _CLEANUP_POLICIES for p in self.cleanup_policy),
            "cleanup.policy",
            self.cleanup_policy,
        )
        _require(self.delete_retention_ms >= 0, "delete.retention.ms", self.delete_retention_ms)
        _require(self.min_compaction_lag_ms >= 0, "min.compaction.lag.ms", self.min_compaction_lag_ms)
        _require(
            0 <= self.min_cleanable_dirty_ratio <= 1,
            "min.cleanable.dirty.ratio",
            self.min_cleanable_dirty_ratio,
        )

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == "LogAppendTime"

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        """Whether time- and size-based retention apply (a compact-only topic keeps every key)."""
        return "delete" in self.cleanup_policy

    @property
    def max_index_entries(self) -> int:
        return self.segment_index_bytes // 8

    @classmethod
    def from_topic_configs(cls, configs: dict[str, str], base: LogConfig | None = None) -> LogConfig:
        """Builds a LogConfig from Kafka topic config names; unknown keys are ignored."""
        values = {f.name: getattr(base, f.name) for f in fields(cls)} if base else {}
        for key, raw in configs.items():
            name = TOPIC_CONFIG_KEYS.get(key)
            if name is None:
                continue
            if name == "message_timestamp_type":
                values[name] = raw
                continue
            if name == "cleanup_policy":
                values[name] = _parse_policy(raw)
                continue
            if name == "min_cleanable_dirty_ratio":
                try:
                    values[name] = float(raw)
                except (TypeError, ValueError):
                    raise ValueError(f"invalid value {raw!r} for topic config {key}: not a number") from None
                continue
            try:
                values[name] = int(raw)
            except (TypeError, ValueError):
                raise ValueError(f"invalid value {raw!r} for topic config {key}: not an integer") from None
        return cls(**values)


def _parse_policy(raw) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return tuple(item.strip() for item in items if item.strip())


def _require(ok: bool, key: str, value) -> None:
    if not ok:
        raise ValueError(f"invalid value {value!r} for topic config {key}")
