"""Broker and topic configuration with Kafka's names, types, defaults and validation.

A user who knows Kafka should be able to reuse their ``server.properties``: every key here is spelled as in
Kafka, with Kafka's default.  Values come, in rising precedence, from the defaults below, a properties file,
``KRAFTPY_*`` environment variables (``KRAFTPY_LOG_DIRS`` sets ``log.dirs``) and ``--override key=value``
flags.  A bad value fails fast with ``ConfigError`` naming the key, so ``kraftpy broker`` exits non-zero
with a message a person can act on instead of crashing later.

Topic configs (``retention.ms``, ``max.message.bytes``, ...) default to a broker config (``log.retention.ms``,
``message.max.bytes``, ...), exactly as in Kafka; ``TOPIC_CONFIGS`` records that link so DescribeConfigs
can report each value together with its source.

One key is ours, not Kafka's (Kafka exports metrics over JMX): ``metrics.listener``, the ``host:port`` of the
HTTP listener serving ``/metrics``, ``/healthz`` and ``/readyz``.  Its default ``127.0.0.1:0`` binds a free
loopback port (the broker logs the URL; deployments set e.g. ``0.0.0.0:9404``); an empty value disables it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range; the message names the key."""


# DescribeConfigs ConfigType codes (DescribeConfigsResponse.json, v3+).
TYPE_BOOLEAN, TYPE_STRING, TYPE_INT, TYPE_SHORT, TYPE_LONG, TYPE_DOUBLE, TYPE_LIST = 1, 2, 3, 4, 5, 6, 7
# DescribeConfigs ConfigSource codes.
SOURCE_DYNAMIC_TOPIC_CONFIG = 1
SOURCE_STATIC_BROKER_CONFIG = 4
SOURCE_DEFAULT_CONFIG = 5

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


@dataclasses.dataclass(frozen=True)
class ConfigDef:
    """One configuration key: its type, default and the check its value must pass."""

    name: str
    config_type: int
    default: Any
    check: Callable[[Any], bool] | None = None
    requirement: str = ""
    read_only: bool = False


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError("expected true or false")


def _parse_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_value(definition: ConfigDef, raw: Any) -> Any:
    """Converts a raw (usually string) value to the key's type, raising ConfigError naming the key."""
    try:
        if raw is None:
            value = None
        elif definition.config_type == TYPE_BOOLEAN:
            value = raw if isinstance(raw, bool) else _parse_bool(str(raw))
        elif definition.config_type in (TYPE_INT, TYPE_SHORT, TYPE_LONG):
            value = int(str(raw).strip())
        elif definition.config_type == TYPE_DOUBLE:
            value = float(str(raw).strip())
        elif definition.config_type == TYPE_LIST:
            value = list(raw) if isinstance(raw, list) else _parse_list(str(raw))
        else:
            value = str(raw).strip()
    except ValueError as exc:
        raise ConfigError(f"Invalid value {raw!r} for configuration {definition.name}: {exc}") from None
    if definition.config_type == TYPE_INT and value is not None and not -(2**31) <= value <= INT32_MAX:
        raise ConfigError(f"Invalid value {raw!r} for configuration {definition.name}: not a 32-bit integer")
    if value is not None and definition.check is not None and not definition.check(value):
        raise ConfigError(
            f"Invalid value {raw!r} for configuration {definition.name}: {definition.requirement}"
        )
    return value


def _at_least(minimum: float) -> Callable[[Any], bool]:
    return lambda value: value >= minimum


def _one_of(*choices: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        values = value if isinstance(value, list) else [value]
        return all(item in choices for item in values)

    return check


_LISTENER_RE = re.compile(r"^(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)://)(?P<host>\[[^\]]*\]|[^:]*):(?P<port>\d+)$")


def _valid_listeners(value: list[str]) -> bool:
    return all(_LISTENER_RE.match(item) and int(_LISTENER_RE.match(item)["port"]) < 65536 for item in value)


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def _valid_protocol_map(value: list[str]) -> bool:
    pairs = [item.split(":") for item in value]
    return all(len(pair) == 2 and pair[0] and pair[1].upper() in SECURITY_PROTOCOLS for pair in pairs)


def parse_protocol_map(value: list[str]) -> dict[str, str]:
    """``listener.security.protocol.map`` as {listener name: security protocol}."""
    return {name: protocol.upper() for name, protocol in (item.split(":") for item in value)}


_METRICS_LISTENER_RE = re.compile(r"^(?P<host>\[[^\]]*\]|[^:\[\]]*):(?P<port>\d{1,5})$")


def _valid_metrics_listener(value: str) -> bool:
    match = _METRICS_LISTENER_RE.match(value)
    return value == "" or (match is not None and int(match["port"]) < 65536)


def parse_metrics_listener(value: str) -> tuple[str, int] | None:
    """``metrics.listener`` as (host, port), or None when it is empty (metrics disabled)."""
    if not value:
        return None
    match = _METRICS_LISTENER_RE.match(value)
    if match is None:
        raise ConfigError(f"Invalid value {value!r} for configuration metrics.listener: expected host:port")
    return match["host"].strip("[]"), int(match["port"])


def _defs(*definitions: ConfigDef) -> dict[str, ConfigDef]:
    return {definition.name: definition for definition in definitions}


DAY_MS = 24 * 60 * 60 * 1000

BROKER_CONFIGS: dict[str, ConfigDef] = _defs(
    ConfigDef("node.id", TYPE_INT, 1, _at_least(0), "must be >= 0", read_only=True),
    ConfigDef("process.roles", TYPE_LIST, ["broker", "controller"], _one_of("broker", "controller"),
              "must be a list of broker and/or controller", read_only=True),
    ConfigDef("controller.quorum.voters", TYPE_LIST, [], read_only=True),
    ConfigDef("controller.quorum.election.timeout.ms", TYPE_INT, 1000, _at_least(1), "must be >= 1",
              read_only=True),
    ConfigDef("controller.quorum.fetch.timeout.ms", TYPE_INT, 2000, _at_least(1), "must be >= 1",
              read_only=True),
    ConfigDef("listeners", TYPE_LIST, ["PLAINTEXT://127.0.0.1:9092"], _valid_listeners,
              "must be a comma-separated list of NAME://host:port", read_only=True),
    ConfigDef("advertised.listeners", TYPE_LIST, None, _valid_listeners,
              "must be a comma-separated list of NAME://host:port", read_only=True),
    ConfigDef("listener.security.protocol.map", TYPE_LIST,
              ["PLAINTEXT:PLAINTEXT", "SSL:SSL", "SASL_PLAINTEXT:SASL_PLAINTEXT", "SASL_SSL:SASL_SSL"],
              _valid_protocol_map, "must be a comma-separated list of LISTENER_NAME:SECURITY_PROTOCOL",
              read_only=True),
    ConfigDef("log.dirs", TYPE_LIST, ["./data"], lambda value: len(value) == 1,
              "must name exactly one directory (JBOD is not supported)", read_only=True),
    ConfigDef("broker.rack", TYPE_STRING, None, read_only=True),
    ConfigDef("num.partitions", TYPE_INT, 1, _at_least(1), "must be >= 1"),
    ConfigDef("default.replication.factor", TYPE_INT, 1, _at_least(1), "must be >= 1"),
    ConfigDef("min.insync.replicas", TYPE_INT, 1, _at_least(1), "must be >= 1"),
    ConfigDef("unclean.leader.election.enable", TYPE_BOOLEAN, False),
    ConfigDef("auto.create.topics.enable", TYPE_BOOLEAN, True),
    ConfigDef("delete.topic.enable", TYPE_BOOLEAN, True),
    ConfigDef("log.retention.hours", TYPE_INT, 168),
    ConfigDef("log.retention.minutes", TYPE_INT, None),
    ConfigDef("log.retention.ms", TYPE_LONG, None, _at_least(-1), "must be >= -1"),
    ConfigDef("log.retention.bytes", TYPE_LONG, -1),
    ConfigDef("log.retention.check.interval.ms", TYPE_LONG, 300000, _at_least(1), "must be >= 1"),
    ConfigDef("log.segment.bytes", TYPE_INT, 1073741824, _at_least(14), "must be >= 14"),
    ConfigDef("log.roll.hours", TYPE_INT, 168, _at_least(1), "must be >= 1"),
    ConfigDef("log.roll.ms", TYPE_LONG, None, _at_least(1), "must be >= 1"),
    ConfigDef("log.roll.jitter.ms", TYPE_LONG, 0, _at_least(0), "must be >= 0"),
    ConfigDef("log.index.interval.bytes", TYPE_INT, 4096, _at_least(0), "must be >= 0"),
    ConfigDef("log.index.size.max.bytes", TYPE_INT, 10485760, _at_least(4), "must be >= 4"),
    ConfigDef("log.segment.delete.delay.ms", TYPE_LONG, 60000, _at_least(0), "must be >= 0"),
    ConfigDef("log.flush.interval.messages", TYPE_LONG, INT64_MAX, _at_least(1), "must be >= 1"),
    ConfigDef("log.flush.interval.ms", TYPE_LONG, None),
    ConfigDef("log.cleanup.policy", TYPE_LIST, ["delete"], _one_of("delete", "compact"),
              "must be a list of delete and/or compact"),
    ConfigDef("log.cleaner.delete.retention.ms", TYPE_LONG, DAY_MS, _at_least(0), "must be >= 0"),
    ConfigDef("log.cleaner.min.compaction.lag.ms", TYPE_LONG, 0, _at_least(0), "must be >= 0"),
    ConfigDef("log.cleaner.max.compaction.lag.ms", TYPE_LONG, INT64_MAX, _at_least(1), "must be >= 1"),
    ConfigDef("log.cleaner.min.cleanable.ratio", TYPE_DOUBLE, 0.5, lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ConfigDef("log.message.timestamp.type", TYPE_STRING, "CreateTime", _one_of("CreateTime", "LogAppendTime"),
              "must be CreateTime or LogAppendTime"),
    ConfigDef("log.message.timestamp.before.max.ms", TYPE_LONG, INT64_MAX, _at_least(0), "must be >= 0"),
    ConfigDef("log.message.timestamp.after.max.ms", TYPE_LONG, INT64_MAX, _at_least(0), "must be >= 0"),
    ConfigDef("log.preallocate", TYPE_BOOLEAN, False),
    ConfigDef("message.max.bytes", TYPE_INT, 1048588, _at_least(0), "must be >= 0"),
    ConfigDef("compression.type", TYPE_STRING, "producer",
              _one_of("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
              "must be one of producer, uncompressed, gzip, snappy, lz4, zstd"),
    ConfigDef("socket.request.max.bytes", TYPE_INT, 104857600, _at_least(1), "must be >= 1"),
    ConfigDef("socket.send.buffer.bytes", TYPE_INT, 102400),
    ConfigDef("socket.receive.buffer.bytes", TYPE_INT, 102400),
    ConfigDef("queued.max.requests", TYPE_INT, 500, _at_least(1), "must be >= 1"),
    ConfigDef("replica.lag.time.max.ms", TYPE_LONG, 30000, _at_least(1), "must be >= 1"),
    ConfigDef("replica.fetch.wait.max.ms", TYPE_INT, 500, _at_least(0), "must be >= 0"),
    ConfigDef("replica.fetch.max.bytes", TYPE_INT, 1048576, _at_least(0), "must be >= 0"),
    ConfigDef("replica.fetch.response.max.bytes", TYPE_INT, 10485760, _at_least(0), "must be >= 0"),
    ConfigDef("replica.fetch.backoff.ms", TYPE_INT, 1000, _at_least(0), "must be >= 0"),
    ConfigDef("replica.high.watermark.checkpoint.interval.ms", TYPE_LONG, 5000, _at_least(1), "must be >= 1"),
    ConfigDef("broker.session.timeout.ms", TYPE_INT, 9000, _at_least(1), "must be >= 1"),
    ConfigDef("broker.heartbeat.interval.ms", TYPE_INT, 2000, _at_least(1), "must be >= 1"),
    ConfigDef("auto.leader.rebalance.enable", TYPE_BOOLEAN, True),
    ConfigDef("leader.imbalance.check.interval.seconds", TYPE_LONG, 300, _at_least(1), "must be >= 1"),
    ConfigDef("leader.imbalance.per.broker.percentage", TYPE_INT, 10, _at_least(0), "must be >= 0"),
    ConfigDef("producer.id.expiration.ms", TYPE_INT, DAY_MS, _at_least(1), "must be >= 1"),
    ConfigDef("transactional.id.expiration.ms", TYPE_INT, 7 * DAY_MS, _at_least(1), "must be >= 1"),
    ConfigDef("transaction.max.timeout.ms", TYPE_INT, 900000, _at_least(1), "must be >= 1"),
    ConfigDef("offsets.topic.num.partitions", TYPE_INT, 50, _at_least(1), "must be >= 1"),
    ConfigDef("offsets.topic.replication.factor", TYPE_SHORT, 3, _at_least(1), "must be >= 1"),
    ConfigDef("group.initial.rebalance.delay.ms", TYPE_INT, 3000, _at_least(0), "must be >= 0"),
    ConfigDef("offsets.retention.minutes", TYPE_INT, 7 * 24 * 60, _at_least(1), "must be >= 1"),
    ConfigDef("offsets.retention.check.interval.ms", TYPE_LONG, 600000, _at_least(1), "must be >= 1"),
    ConfigDef("offsets.commit.timeout.ms", TYPE_INT, 5000, _at_least(1), "must be >= 1"),
    ConfigDef("offset.metadata.max.bytes", TYPE_INT, 4096, _at_least(0), "must be >= 0"),
    ConfigDef("group.max.size", TYPE_INT, INT32_MAX, _at_least(1), "must be >= 1"),
    ConfigDef("group.min.session.timeout.ms", TYPE_INT, 6000),
    ConfigDef("group.max.session.timeout.ms", TYPE_INT, 1800000),
    ConfigDef("connections.max.idle.ms", TYPE_LONG, 600000),
    ConfigDef("fetch.max.bytes", TYPE_INT, 57671680, _at_least(1024), "must be >= 1024"),
    # Not a Kafka key: Kafka snapshots the metadata log after metadata.log.max.record.bytes.between.snapshots
    # (20 MiB) of records; our Raft core counts committed entries (one entry = one controller decision's batch),
    # so this is that trigger in entries (RaftConfig.snapshot_interval_entries).  Tests set it small.
    ConfigDef("metadata.log.max.snapshot.interval.entries", TYPE_LONG, 10_000, _at_least(1), "must be >= 1",
              read_only=True),
    # Not a Kafka key (Kafka exports JMX): host:port of the HTTP listener for /metrics, /healthz, /readyz.
    # Port 0 picks a free port (the broker logs the URL); an empty value disables the listener.
    ConfigDef("metrics.listener", TYPE_STRING, "127.0.0.1:0", _valid_metrics_listener,
              "must be host:port (port 0 = any free port) or empty to disable", read_only=True),
    # Not a Kafka key, tests only: a file naming peer node ids whose inter-node traffic (Raft and controller
    # calls) this node drops, to cut links without network namespaces (cluster/transport/raft_grpc.py,
    # FaultFilter).  Empty (the default) switches the hook off.
    ConfigDef("kraftpy.test.fault.file", TYPE_STRING, "", read_only=True),
    # Not a Kafka key, tests only: model power loss.  The storage seam journals each fsynced length and the next
    # start cuts every partition-log file back to it, so bytes never fsynced before a kill -9 are gone
    # (cluster/storage/power_loss.py).  False (the default) leaves storage untouched.
    ConfigDef("kraftpy.test.lose.unsynced.on.crash", TYPE_BOOLEAN, False, read_only=True),
    # Not a Kafka key, tests only, and only with the key above: every journaled fsync first sleeps this long (a
    # slow disk), which widens the window in which acks=1 data is acknowledged but not yet durable.
    ConfigDef("kraftpy.test.fsync.delay.ms", TYPE_INT, 0, _at_least(0), "must be >= 0", read_only=True),
    # Not a Kafka key, tests only: a file holding a signed offset in ms that the broker's wall clock adds
    # (cluster/core/clock.py; re-read at most every 100 ms), for the clock-skew nemesis.  Empty: no offset.
    ConfigDef("kraftpy.test.clock.offset.file", TYPE_STRING, "", read_only=True),
    # Not a Kafka key, tests only: deliberate bugs that the fault harnesses must catch (jepsen_like's "the harness
    # can fail" runs and the process tests).  ``drop_producer_state_on_become_leader``: a new partition leader
    # forgets every idempotent producer; ``short_session_on_new_controller``: the controller failover before
    # issue 16 (a newly active controller gives brokers half a session to find it, and brokers wait on a frozen
    # controller until their call's deadline); ``skip_fetch_offset_check``: a leader answers a follower's fetch
    # below its log start with what it holds instead of OFFSET_OUT_OF_RANGE.  Empty (the default): none.
    ConfigDef("kraftpy.test.broken", TYPE_LIST, [],
              _one_of("drop_producer_state_on_become_leader", "short_session_on_new_controller",
                      "skip_fetch_offset_check"),
              "must name known deliberate bugs: drop_producer_state_on_become_leader, "
              "short_session_on_new_controller, skip_fetch_offset_check", read_only=True),
    # Not Kafka keys (Kafka logs through log4j): the broker's log line format ("text" or "json", one line per
    # event) and per-logger levels ("INFO" or "cluster.raft=DEBUG,root=INFO"); --log-format/--log-level win.
    ConfigDef("logging.format", TYPE_STRING, "text", lambda value: value in ("text", "json"),
              "must be text or json"),
    ConfigDef("logging.level", TYPE_STRING, "INFO"),
)


@dataclasses.dataclass(frozen=True)
class TopicConfigDef:
    """A topic-level key and the broker key it inherits its default from (None: a fixed default)."""

    definition: ConfigDef
    broker_key: str | None


def _topic(name: str, config_type: int, broker_key: str | None, default: Any = None,
           check: Callable[[Any], bool] | None = None, requirement: str = "") -> TopicConfigDef:
    if broker_key is not None:
        broker_definition = BROKER_CONFIGS[broker_key]
        check = check or broker_definition.check
        requirement = requirement or broker_definition.requirement
    return TopicConfigDef(ConfigDef(name, config_type, default, check, requirement), broker_key)


TOPIC_CONFIGS: dict[str, TopicConfigDef] = {
    item.definition.name: item
    for item in (
        _topic("cleanup.policy", TYPE_LIST, "log.cleanup.policy"),
        _topic("compression.type", TYPE_STRING, "compression.type"),
        _topic("delete.retention.ms", TYPE_LONG, "log.cleaner.delete.retention.ms"),
        _topic("file.delete.delay.ms", TYPE_LONG, "log.segment.delete.delay.ms"),
        _topic("flush.messages", TYPE_LONG, "log.flush.interval.messages"),
        _topic("flush.ms", TYPE_LONG, None, INT64_MAX, _at_least(0), "must be >= 0"),
        _topic("index.interval.bytes", TYPE_INT, "log.index.interval.bytes"),
        _topic("max.compaction.lag.ms", TYPE_LONG, "log.cleaner.max.compaction.lag.ms"),
        _topic("max.message.bytes", TYPE_INT, "message.max.bytes"),
        _topic("message.timestamp.type", TYPE_STRING, "log.message.timestamp.type"),
        _topic("message.timestamp.before.max.ms", TYPE_LONG, "log.message.timestamp.before.max.ms"),
        _topic("message.timestamp.after.max.ms", TYPE_LONG, "log.message.timestamp.after.max.ms"),
        _topic("min.cleanable.dirty.ratio", TYPE_DOUBLE, "log.cleaner.min.cleanable.ratio"),
        _topic("min.compaction.lag.ms", TYPE_LONG, "log.cleaner.min.compaction.lag.ms"),
        _topic("min.insync.replicas", TYPE_INT, "min.insync.replicas"),
        _topic("preallocate", TYPE_BOOLEAN, "log.preallocate"),
        _topic("retention.bytes", TYPE_LONG, "log.retention.bytes"),
        _topic("retention.ms", TYPE_LONG, None, 7 * DAY_MS, _at_least(-1), "must be >= -1"),
        _topic("segment.bytes", TYPE_INT, "log.segment.bytes"),
        _topic("segment.index.bytes", TYPE_INT, "log.index.size.max.bytes"),
        _topic("segment.jitter.ms", TYPE_LONG, "log.roll.jitter.ms"),
        _topic("segment.ms", TYPE_LONG, None, 7 * DAY_MS, _at_least(1), "must be >= 1"),
        _topic("unclean.leader.election.enable", TYPE_BOOLEAN, "unclean.leader.election.enable"),
    )
}

# Topic keys whose broker-side default is derived (hours/minutes/ms precedence), not a single broker key.
_DERIVED_TOPIC_DEFAULTS = {
    "retention.ms": lambda broker: broker.retention_ms,
    "segment.ms": lambda broker: broker.roll_ms,
    "flush.ms": lambda broker: broker.get("log.flush.interval.ms") or INT64_MAX,
}


class BrokerConfig:
    """The broker's resolved configuration: typed values plus which keys the user set explicitly."""

    def __init__(self, values: Mapping[str, Any], explicit_keys: Iterable[str]) -> None:
        self._values = dict(values)
        self.explicit_keys = frozenset(explicit_keys)

    @classmethod
    def from_sources(
        cls,
        properties: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> BrokerConfig:
        """Merges defaults < properties < environment (KRAFTPY_*) < overrides, validating every key."""
        raw: dict[str, str] = {}
        raw.update(properties or {})
        raw.update(environment_overrides(environ if environ is not None else os.environ))
        raw.update(overrides or {})
        values = {name: definition.default for name, definition in BROKER_CONFIGS.items()}
        for key, raw_value in raw.items():
            definition = BROKER_CONFIGS.get(key)
            if definition is None:
                if key in TOPIC_CONFIGS:
                    raise ConfigError(f"{key} is a topic config; set its broker default instead")
                # Kafka logs unknown keys and carries on; we keep them so DescribeConfigs can show them.
                values[key] = raw_value
                continue
            values[key] = parse_value(definition, raw_value)
        config = cls(values, raw.keys())
        config._validate_cross_key_rules()
        return config

    def _validate_cross_key_rules(self) -> None:
        roles = self.get("process.roles")
        if sorted(set(roles)) != ["broker", "controller"]:
            # Kafka also runs broker-only and controller-only nodes; here every node is both, so a node told to be
            # one of them would silently be the other too.  Refuse instead of ignoring the setting.
            raise ConfigError(f"process.roles={','.join(roles)} is not supported: every kraftpy node is both a "
                              "broker and a metadata-quorum voter (process.roles=broker,controller)")
        if self.retention_ms == 0:
            raise ConfigError("log.retention.ms must not be 0 (use -1 for unlimited retention)")
        ports = [parse_listener(item)[2] for item in self.get("listeners")]
        if len(set(ports)) != len(ports):
            raise ConfigError("listeners must not repeat a port")
        protocols = parse_protocol_map(self.get("listener.security.protocol.map"))
        advertised = self._values["advertised.listeners"] or []
        for name, _host, _port in [*self.listeners, *(parse_listener(item) for item in advertised)]:
            protocol = protocols.get(name)
            if protocol is None:
                raise ConfigError(f"listener.security.protocol.map: no security protocol defined for listener "
                                  f"{name} (add {name}:PLAINTEXT)")
            if protocol != "PLAINTEXT":
                raise ConfigError(f"listener.security.protocol.map: listener {name} uses {protocol}; only "
                                  "PLAINTEXT is supported")
        names = {name for name, _host, _port in self.listeners}
        for name, _host, _port in (parse_listener(item) for item in advertised):
            if name not in names:
                raise ConfigError(f"advertised.listeners names {name}, which is not in listeners")

    def get(self, key: str) -> Any:
        return self._values[key]

    def items(self) -> Iterable[tuple[str, Any]]:
        return self._values.items()

    @property
    def node_id(self) -> int:
        return self._values["node.id"]

    @property
    def log_dir(self) -> str:
        return self._values["log.dirs"][0]

    @property
    def listeners(self) -> list[tuple[str, str, int]]:
        return [parse_listener(item) for item in self._values["listeners"]]

    @property
    def advertised_listeners(self) -> list[tuple[str, str, int]]:
        advertised = self._values["advertised.listeners"] or self._values["listeners"]
        return [parse_listener(item) for item in advertised]

    @property
    def retention_ms(self) -> int:
        """Kafka's precedence: log.retention.ms, then .minutes, then .hours."""
        if self._values["log.retention.ms"] is not None:
            return self._values["log.retention.ms"]
        if self._values["log.retention.minutes"] is not None:
            return self._values["log.retention.minutes"] * 60_000
        return self._values["log.retention.hours"] * 3_600_000

    @property
    def roll_ms(self) -> int:
        if self._values["log.roll.ms"] is not None:
            return self._values["log.roll.ms"]
        return self._values["log.roll.hours"] * 3_600_000

    def topic_default(self, topic_key: str) -> tuple[Any, int]:
        """The value a topic gets for ``topic_key`` when it does not set it, and that value's source."""
        topic_def = TOPIC_CONFIGS[topic_key]
        if topic_key in _DERIVED_TOPIC_DEFAULTS:
            explicit = any(key.startswith(_broker_prefix(topic_key)) for key in self.explicit_keys)
            source = SOURCE_STATIC_BROKER_CONFIG if explicit else SOURCE_DEFAULT_CONFIG
            return _DERIVED_TOPIC_DEFAULTS[topic_key](self), source
        broker_key = topic_def.broker_key
        source = SOURCE_STATIC_BROKER_CONFIG if broker_key in self.explicit_keys else SOURCE_DEFAULT_CONFIG
        return self._values[broker_key], source


def _broker_prefix(topic_key: str) -> str:
    return {"retention.ms": "log.retention.", "segment.ms": "log.roll.", "flush.ms": "log.flush.interval.ms"}[
        topic_key
    ]


def parse_listener(listener: str) -> tuple[str, str, int]:
    """Splits ``NAME://host:port`` into (name, host, port); an empty host means all interfaces."""
    match = _LISTENER_RE.match(listener)
    if match is None:
        raise ConfigError(f"Invalid listener {listener!r}: expected NAME://host:port")
    host = match["host"].strip("[]")
    return match["name"], host, int(match["port"])


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, Any]:
    """Parses topic-level overrides (CreateTopics, AlterConfigs); raises ConfigError naming a bad key."""
    parsed: dict[str, Any] = {}
    for key, raw_value in configs.items():
        topic_def = TOPIC_CONFIGS.get(key)
        if topic_def is None:
            raise ConfigError(f"Unknown topic config name: {key}")
        if raw_value is None:
            raise ConfigError(f"Null value not supported for topic config {key}")
        parsed[key] = parse_value(topic_def.definition, raw_value)
    return parsed


def resolve_topic_configs(broker: BrokerConfig, overrides: Mapping[str, Any]) -> dict[str, tuple[Any, int]]:
    """Every topic config's effective value and source (topic override, broker setting, or default)."""
    resolved: dict[str, tuple[Any, int]] = {}
    for key in TOPIC_CONFIGS:
        if key in overrides:
            resolved[key] = (overrides[key], SOURCE_DYNAMIC_TOPIC_CONFIG)
        else:
            resolved[key] = broker.topic_default(key)
    return resolved


def format_value(value: Any) -> str | None:
    """Renders a typed value the way Kafka's DescribeConfigs does (lists comma-joined, booleans lower-case)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def read_properties_file(path: str) -> dict[str, str]:
    """Reads a Java-style .properties file (``key=value`` or ``key: value``, ``#``/``!`` comments)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}") from None
    properties: dict[str, str] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#!":
            continue
        match = re.match(r"^([^=:\s]+)\s*[=:]\s*(.*)$", stripped)
        if match is None:
            raise ConfigError(f"{path}:{line_number}: expected key=value, got {stripped!r}")
        properties[match[1]] = match[2]
    return properties


def environment_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """``KRAFTPY_LOG_DIRS=/x`` becomes ``log.dirs=/x``: upper-case, dots as underscores."""
    by_env_name = {"KRAFTPY_" + name.upper().replace(".", "_"): name for name in BROKER_CONFIGS}
    return {by_env_name[key]: value for key, value in environ.items() if key in by_env_name}


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """Parses ``--override key=value`` flags."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Invalid override {pair!r}: expected key=value")
        overrides[key.strip()] = value
    return overrides
