"""Plain values the client hands back: cluster metadata, produce and fetch results, config entries.

The generated codecs' response objects mirror the wire and change shape with every version; callers
(the CLI, tests, tools) want one stable shape whatever version was negotiated, so the client converts
responses into these small dataclasses, named with Kafka's terms (``leader_epoch``, ``high_watermark``,
``log_start_offset``, ``base_offset``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

__all__ = [
    "BrokerInfo",
    "ClusterMetadata",
    "ConfigEntry",
    "ConfigSource",
    "ConsumerRecord",
    "CreatedTopic",
    "FetchedPartition",
    "NewTopic",
    "OffsetAndTimestamp",
    "PartitionMetadata",
    "ProduceResult",
    "ProducerRecord",
    "ResourceType",
    "TopicMetadata",
    "TopicPartition",
]

TopicPartition = tuple[str, int]

NO_LEADER = -1


class ResourceType:
    """DescribeConfigs resource types (ConfigResource.Type in Kafka)."""

    TOPIC = 2
    BROKER = 4


class ConfigSource:
    """DescribeConfigs config_source values (DescribeConfigsResponse.ConfigSource in Kafka)."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    CLIENT_METRICS_CONFIG = 7

    NAMES = {
        0: "UNKNOWN",
        1: "DYNAMIC_TOPIC_CONFIG",
        2: "DYNAMIC_BROKER_CONFIG",
        3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4: "STATIC_BROKER_CONFIG",
        5: "DEFAULT_CONFIG",
        6: "DYNAMIC_BROKER_LOGGER_CONFIG",
        7: "CLIENT_METRICS_CONFIG",
    }


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)


@dataclass(frozen=True, slots=True)
class PartitionMetadata:
    partition: int
    leader_id: int
    leader_epoch: int
    replica_nodes: tuple[int, ...]
    isr_nodes: tuple[int, ...]
    offline_replicas: tuple[int, ...] = ()
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    name: str
    topic_id: uuid.UUID | None
    is_internal: bool
    partitions: dict[int, PartitionMetadata]
    error_code: int = 0

    @property
    def num_partitions(self) -> int:
        return len(self.partitions)

    @property
    def replication_factor(self) -> int:
        return max((len(p.replica_nodes) for p in self.partitions.values()), default=0)


@dataclass(slots=True)
class ClusterMetadata:
    cluster_id: str | None
    controller_id: int
    brokers: dict[int, BrokerInfo]
    topics: dict[str, TopicMetadata]


@dataclass(slots=True)
class NewTopic:
    """A CreateTopics entry; -1 lets the broker apply num.partitions / default.replication.factor."""

    name: str
    num_partitions: int = -1
    replication_factor: int = -1
    configs: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreatedTopic:
    name: str
    topic_id: uuid.UUID | None
    num_partitions: int
    replication_factor: int


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    name: str
    value: str | None
    source: int
    read_only: bool = False
    is_sensitive: bool = False

    @property
    def is_default(self) -> bool:
        return self.source == ConfigSource.DEFAULT_CONFIG


@dataclass(slots=True)
class ProducerRecord:
    """What a producer sends; ``timestamp_ms`` None means "now" (CreateTime set by the client)."""

    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ProduceResult:
    topic: str
    partition: int
    base_offset: int
    log_append_time_ms: int
    log_start_offset: int
    record_count: int


@dataclass(frozen=True, slots=True)
class OffsetAndTimestamp:
    offset: int
    timestamp: int
    leader_epoch: int


@dataclass(slots=True)
class ConsumerRecord:
    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int  # 0 CreateTime, 1 LogAppendTime
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    leader_epoch: int = -1


@dataclass(slots=True)
class FetchedPartition:
    """One partition of a Fetch response, records already decoded and filtered.

    ``next_offset`` is where the next fetch should start: past the last complete batch returned,
    including control batches (transaction markers) that yield no records.  It equals the requested
    offset when nothing complete came back.
    """

    topic: str
    partition: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: list[ConsumerRecord]
    next_offset: int


def format_address(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals bracketed as Kafka prints them."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str) -> tuple[str, int]:
    """Parses ``host:port`` or ``[v6]:port``; raises ValueError naming what is wrong."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad address {text!r}: expected [ipv6]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"bad address {text!r}: expected host:port")
    if not host:
        raise ValueError(f"bad address {text!r}: empty host")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad address {text!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad address {text!r}: port {port} out of range")
    return host, port


def parse_bootstrap_servers(servers: str | list[str] | tuple[str, ...]) -> list[tuple[str, int]]:
    """``"h1:9092,h2:9092"`` (or a list of such) into ``[(host, port), ...]``."""
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    addresses = [parse_address(item) for item in items if item.strip()]
    if not addresses:
        raise ValueError("no bootstrap server given")
    return addresses
