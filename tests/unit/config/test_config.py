"""Configuration: Kafka names and defaults, precedence, and errors that name the key."""

import pytest

from cluster.config import (
    SOURCE_DEFAULT_CONFIG,
    SOURCE_DYNAMIC_TOPIC_CONFIG,
    SOURCE_STATIC_BROKER_CONFIG,
    BrokerConfig,
    ConfigError,
    parse_overrides,
    read_properties_file,
    resolve_topic_configs,
    validate_topic_configs,
)


def test_defaults_are_kafkas():
    config = BrokerConfig.from_sources({}, environ={})
    assert config.get("num.partitions") == 1
    assert config.get("message.max.bytes") == 1048588
    assert config.get("socket.request.max.bytes") == 104857600
    assert config.retention_ms == 168 * 3_600_000
    assert config.get("auto.create.topics.enable") is True


def test_precedence_file_then_environment_then_overrides(tmp_path):
    path = tmp_path / "server.properties"
    path.write_text("# comment\nlog.dirs=/from/file\nnum.partitions = 3\n")
    config = BrokerConfig.from_sources(
        read_properties_file(str(path)),
        environ={"KRAFTPY_LOG_DIRS": "/from/env"},
        overrides=parse_overrides(["num.partitions=5"]),
    )
    assert config.log_dir == "/from/env"
    assert config.get("num.partitions") == 5


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num.partitions", "zero"),
        ("num.partitions", "0"),
        ("listeners", "127.0.0.1:9092"),
        ("auto.create.topics.enable", "yes"),
        ("log.message.timestamp.type", "WallClock"),
        ("message.max.bytes", "99999999999"),
    ],
)
def test_bad_values_fail_naming_the_key(key, value):
    with pytest.raises(ConfigError) as raised:
        BrokerConfig.from_sources({key: value}, environ={})
    assert key in str(raised.value)


def test_unreadable_file_and_bad_line_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read config file"):
        read_properties_file(str(tmp_path / "missing.properties"))
    bad = tmp_path / "bad.properties"
    bad.write_text("just-a-word\n")
    with pytest.raises(ConfigError, match="bad.properties:1"):
        read_properties_file(str(bad))


def test_topic_configs_report_their_source():
    config = BrokerConfig.from_sources({"log.segment.bytes": "1048576"}, environ={})
    resolved = resolve_topic_configs(config, validate_topic_configs({"retention.ms": "1000"}))
    assert resolved["retention.ms"] == (1000, SOURCE_DYNAMIC_TOPIC_CONFIG)
    assert resolved["segment.bytes"] == (1048576, SOURCE_STATIC_BROKER_CONFIG)
    assert resolved["max.message.bytes"] == (1048588, SOURCE_DEFAULT_CONFIG)


def test_unknown_or_bad_topic_config_is_rejected():
    with pytest.raises(ConfigError, match="Unknown topic config"):
        validate_topic_configs({"retention.mss": "1"})
    with pytest.raises(ConfigError, match="cleanup.policy"):
        validate_topic_configs({"cleanup.policy": "forever"})


@pytest.mark.parametrize("roles", ["broker", "controller"])
def test_a_broker_only_or_controller_only_node_is_refused_naming_the_key(roles):
    with pytest.raises(ConfigError, match="process.roles=" + roles + " is not supported"):
        BrokerConfig.from_sources({"process.roles": roles}, environ={})


def test_both_roles_in_either_order_are_accepted():
    config = BrokerConfig.from_sources({"process.roles": "controller,broker"}, environ={})
    assert sorted(config.get("process.roles")) == ["broker", "controller"]
