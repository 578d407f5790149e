"""The broker's group settings, including Kafka keys cluster/config.py does not define (kept as raw strings)."""

from __future__ import annotations

import pytest

from cluster.broker.group_coordinator import group_config
from cluster.config import BrokerConfig, ConfigError


def test_defaults_are_kafkas():
    config = group_config(BrokerConfig.from_sources(environ={}))
    assert config.initial_rebalance_delay_ms == 3000
    assert (config.min_session_timeout_ms, config.max_session_timeout_ms) == (6000, 1_800_000)
    assert config.offsets_retention_ms == 7 * 24 * 3600 * 1000
    assert config.offset_metadata_max_bytes == 4096
    assert config.num_partitions is None  # taken from the topic once it exists


def test_overrides_including_keys_config_py_does_not_know():
    config = group_config(BrokerConfig.from_sources(environ={}, overrides={
        "group.initial.rebalance.delay.ms": "0", "offsets.retention.minutes": "2", "group.max.size": "7"}))
    assert config.initial_rebalance_delay_ms == 0
    assert config.offsets_retention_ms == 120_000
    assert config.max_group_size == 7


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match="offsets.retention.minutes"):
        group_config(BrokerConfig.from_sources(environ={}, overrides={"offsets.retention.minutes": "soon"}))
