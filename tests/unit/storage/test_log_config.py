"""LogConfig defaults, Kafka topic-config names and validation."""

from __future__ import annotations

import dataclasses

import pytest

from cluster.storage import LogConfig


def test_defaults_are_kafkas() -> None:
    config = LogConfig()
    assert config.segment_bytes == 1073741824
    assert config.segment_ms == 604800000
    assert config.retention_ms == 604800000
    assert config.retention_bytes == -1
    assert config.index_interval_bytes == 4096
    assert config.max_message_bytes == 1048588
    assert config.message_timestamp_type == "CreateTime" and not config.log_append_time
    assert config.max_index_entries == 10485760 // 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.segment_bytes = 1  # type: ignore[misc]


def test_from_topic_configs() -> None:
    config = LogConfig.from_topic_configs(
        {
            "segment.bytes": "1048576",
            "retention.ms": "-1",
            "message.timestamp.type": "LogAppendTime",
            "cleanup.policy": "delete",
        }
    )
    assert config.segment_bytes == 1048576 and config.retention_ms == -1 and config.log_append_time
    layered = LogConfig.from_topic_configs({"retention.bytes": "100"}, base=config)
    assert layered.segment_bytes == 1048576 and layered.retention_bytes == 100


@pytest.mark.parametrize(
    "key,value",
    [
        ("segment.bytes", "10"),
        ("segment.ms", "0"),
        ("retention.ms", "-2"),
        ("message.timestamp.type", "Whenever"),
        ("max.message.bytes", "lots"),
        ("segment.index.bytes", "4"),
    ],
)
def test_bad_values_name_the_key(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        LogConfig.from_topic_configs({key: value})
