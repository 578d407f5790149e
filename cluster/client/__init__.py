"""A small asyncio Kafka client built on our own codecs (cluster.wire), for the CLI, tools and tests.

Layer: imports cluster.wire and cluster.core only.  Start with ``KafkaClient``; errors are
``KafkaResponseError`` (a broker's error code) and ``BrokerConnectionError`` (an address that failed).
"""

from cluster.client.client import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    MAX_TIMESTAMP,
    READ_COMMITTED,
    READ_UNCOMMITTED,
    KafkaClient,
    decode_partition_records,
)
from cluster.client.connection import CLIENT_VERSIONS, ApiKey, BrokerConnection
from cluster.client.errors import BrokerConnectionError, KafkaResponseError, RequestTimeoutError
from cluster.client.groups import (
    CommittedOffset,
    GroupDescription,
    GroupListing,
    GroupMember,
    decode_consumer_assignment,
)
from cluster.client.partitioner import StickyPartitioner, keyed_partition, murmur2
from cluster.client.types import (
    BrokerInfo,
    ClusterMetadata,
    ConfigEntry,
    ConfigSource,
    ConsumerRecord,
    CreatedTopic,
    FetchedPartition,
    NewTopic,
    OffsetAndTimestamp,
    PartitionMetadata,
    ProduceResult,
    ProducerRecord,
    ResourceType,
    TopicMetadata,
)

__all__ = [
    "CLIENT_VERSIONS",
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "MAX_TIMESTAMP",
    "READ_COMMITTED",
    "READ_UNCOMMITTED",
    "ApiKey",
    "BrokerConnection",
    "BrokerConnectionError",
    "BrokerInfo",
    "ClusterMetadata",
    "CommittedOffset",
    "ConfigEntry",
    "ConfigSource",
    "ConsumerRecord",
    "CreatedTopic",
    "FetchedPartition",
    "GroupDescription",
    "GroupListing",
    "GroupMember",
    "KafkaClient",
    "KafkaResponseError",
    "NewTopic",
    "OffsetAndTimestamp",
    "PartitionMetadata",
    "ProduceResult",
    "ProducerRecord",
    "RequestTimeoutError",
    "ResourceType",
    "StickyPartitioner",
    "TopicMetadata",
    "decode_consumer_assignment",
    "decode_partition_records",
    "keyed_partition",
    "murmur2",
]
