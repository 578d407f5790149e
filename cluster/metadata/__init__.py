"""KRaft-style cluster metadata, pure: records, immutable images, deltas and the controller's decisions.

``records`` frames metadata records as Kafka's ApiMessageAndVersion; ``image``/``delta`` turn
committed records into immutable ``MetadataImage``s (and tell a broker what it now leads or
follows); ``controller`` decides changes as ``ControllerResult(records, response)`` and learns them
only by replaying records (``QuorumController`` composes the control managers ``cluster_control``,
``replication_control``, ``configuration_control`` and ``producer_id_control``); ``controller_api`` holds the typed
requests and results of the controller service; ``placement`` spreads new replicas over brokers and racks; ``snapshot``
writes an image as the records that rebuild it (the metadata log's snapshots).  This package imports only ``cluster.core`` and ``cluster.wire``
(and the crc32c extension): no I/O, clocks or global randomness.
"""

from cluster.metadata.controller import (
    PRODUCER_ID_BLOCK_SIZE as PRODUCER_ID_BLOCK_SIZE,
)
from cluster.metadata.controller import (
    AlterPartitionResult as AlterPartitionResult,
)
from cluster.metadata.controller import (
    ControllerConfig as ControllerConfig,
)
from cluster.metadata.controller import (
    ControllerResult as ControllerResult,
)
from cluster.metadata.controller import (
    CreateTopicResult as CreateTopicResult,
)
from cluster.metadata.controller import (
    HeartbeatResult as HeartbeatResult,
)
from cluster.metadata.controller import (
    NewTopic as NewTopic,
)
from cluster.metadata.controller import (
    QuorumController as QuorumController,
)
from cluster.metadata.delta import (
    NO_LEADER_CHANGE as NO_LEADER_CHANGE,
)
from cluster.metadata.delta import (
    LocalPartition as LocalPartition,
)
from cluster.metadata.delta import (
    LocalReplicaChanges as LocalReplicaChanges,
)
from cluster.metadata.delta import (
    MetadataDelta as MetadataDelta,
)
from cluster.metadata.delta import (
    merge_partition_change as merge_partition_change,
)
from cluster.metadata.image import (
    BROKER_RESOURCE as BROKER_RESOURCE,
)
from cluster.metadata.image import (
    NO_LEADER as NO_LEADER,
)
from cluster.metadata.image import (
    TOPIC_RESOURCE as TOPIC_RESOURCE,
)
from cluster.metadata.image import (
    BrokerEndpoint as BrokerEndpoint,
)
from cluster.metadata.image import (
    BrokerRegistration as BrokerRegistration,
)
from cluster.metadata.image import (
    ClusterImage as ClusterImage,
)
from cluster.metadata.image import (
    ConfigsImage as ConfigsImage,
)
from cluster.metadata.image import (
    FeaturesImage as FeaturesImage,
)
from cluster.metadata.image import (
    MetadataImage as MetadataImage,
)
from cluster.metadata.image import (
    PartitionRegistration as PartitionRegistration,
)
from cluster.metadata.image import (
    ProducerIdsImage as ProducerIdsImage,
)
from cluster.metadata.image import (
    TopicImage as TopicImage,
)
from cluster.metadata.image import (
    TopicsImage as TopicsImage,
)
from cluster.metadata.placement import place_replicas as place_replicas
from cluster.metadata.records import decode_record as decode_record
from cluster.metadata.records import encode_record as encode_record
from cluster.metadata.snapshot import MetadataSnapshot as MetadataSnapshot
from cluster.metadata.snapshot import decode_snapshot as decode_snapshot
from cluster.metadata.snapshot import encode_snapshot as encode_snapshot
from cluster.metadata.snapshot import image_to_records as image_to_records
from cluster.metadata.snapshot import snapshot_delta as snapshot_delta

__all__ = [
    "PRODUCER_ID_BLOCK_SIZE", "AlterPartitionResult", "ControllerConfig", "ControllerResult",
    "CreateTopicResult", "HeartbeatResult", "NewTopic", "QuorumController", "NO_LEADER_CHANGE",
    "LocalPartition", "LocalReplicaChanges", "MetadataDelta", "merge_partition_change",
    "BROKER_RESOURCE", "NO_LEADER", "TOPIC_RESOURCE", "BrokerEndpoint", "BrokerRegistration",
    "ClusterImage", "ConfigsImage", "FeaturesImage", "MetadataImage", "PartitionRegistration",
    "ProducerIdsImage", "TopicImage", "TopicsImage", "place_replicas", "decode_record", "encode_record",
    "MetadataSnapshot", "decode_snapshot", "encode_snapshot", "image_to_records", "snapshot_delta",
]
