"""Named listeners (INTERNAL/EXTERNAL): listener.security.protocol.map with Kafka's default, and its checks."""

from __future__ import annotations

import pytest

from cluster.config import BrokerConfig, ConfigError, parse_protocol_map

TWO_LISTENERS = {
    "listeners": "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092",
    "advertised.listeners": "INTERNAL://broker1:9092,EXTERNAL://localhost:19092",
    "listener.security.protocol.map": "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
}


def config(**overrides) -> BrokerConfig:
    return BrokerConfig.from_sources({}, environ={}, overrides=overrides)


def test_default_map_is_kafkas():
    assert parse_protocol_map(config().get("listener.security.protocol.map")) == {
        "PLAINTEXT": "PLAINTEXT", "SSL": "SSL", "SASL_PLAINTEXT": "SASL_PLAINTEXT", "SASL_SSL": "SASL_SSL"}


def test_two_named_listeners_keep_their_names_and_order():
    c = config(**TWO_LISTENERS)
    assert c.listeners == [("INTERNAL", "0.0.0.0", 9092), ("EXTERNAL", "0.0.0.0", 19092)]
    assert c.advertised_listeners == [("INTERNAL", "broker1", 9092), ("EXTERNAL", "localhost", 19092)]


def test_the_environment_sets_the_map():
    env = {"KRAFTPY_LISTENERS": TWO_LISTENERS["listeners"],
           "KRAFTPY_LISTENER_SECURITY_PROTOCOL_MAP": TWO_LISTENERS["listener.security.protocol.map"]}
    assert BrokerConfig.from_sources({}, environ=env).listeners[1][0] == "EXTERNAL"


@pytest.mark.parametrize("overrides, message", [
    ({"listeners": "INTERNAL://0.0.0.0:9092"}, "no security protocol defined for listener INTERNAL"),
    ({"listener.security.protocol.map": "PLAINTEXT:SSL"}, "only PLAINTEXT is supported"),
    ({**TWO_LISTENERS, "advertised.listeners": "OTHER://x:1"}, "listener.security.protocol.map"),
    ({**TWO_LISTENERS, "listener.security.protocol.map": "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,OTHER:PLAINTEXT",
      "advertised.listeners": "OTHER://x:1"}, "not in listeners"),
    ({"listener.security.protocol.map": "PLAINTEXT"}, "listener.security.protocol.map"),
])
def test_bad_listener_configs_fail_fast(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config(**overrides)
