"""The typed requests and results of the controller service: one request class per RPC, as Kafka's
``QuorumController.createTopics(CreateTopicsRequestData)`` takes its request data.

Why it exists: a broker's call to the active controller, the controller's answer, and the gRPC messages that carry
both (proto/cluster/v1/controller.proto) should all speak in these objects, so that no layer in between passes
operation names and dicts around.  ``QuorumController`` decides from the same values; the results that it gives as
bare tuples or dicts (kept for its own tests and the simulator) are wrapped in the small classes below by the
controller service.  Pure data: no I/O, like the rest of this package.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cluster.core.errors import ErrorCode
from cluster.metadata.image import BrokerEndpoint

__all__ = [
    "AllocateProducerIdsRequest", "AlterPartitionRequest", "ApiError", "AlterReassignmentsRequest", "BrokerHeartbeatRequest",
    "CreatePartitionsRequest", "CreateTopicsRequest", "DeleteTopicsRequest", "DescribeQuorumRequest",
    "ElectLeadersRequest", "IsrMember", "ListReassignmentsRequest", "PartitionReassignment", "PartitionResult",
    "ProducerIdsBlock", "ReassignmentTarget", "RegisterBrokerRequest", "RegisterBrokerResult", "TopicError",
]

# (topic name, partition index): how ElectLeaders and ListPartitionReassignments name a partition.
TopicPartition = tuple[str, int]


# == broker lifecycle =================================================================================================
@dataclass(frozen=True)
class RegisterBrokerRequest:
    broker_id: int
    incarnation_id: uuid.UUID
    endpoints: tuple[BrokerEndpoint, ...]
    rack: str | None = None


@dataclass(frozen=True)
class RegisterBrokerResult:
    error_code: ErrorCode
    broker_epoch: int = -1


@dataclass(frozen=True)
class BrokerHeartbeatRequest:
    """Answered by ``HeartbeatResult`` (cluster/metadata/controller.py)."""
    broker_id: int
    broker_epoch: int
    current_metadata_offset: int
    want_shutdown: bool = False


# == topics and partitions ============================================================================================
@dataclass(frozen=True)
class CreateTopicsRequest:
    """Answered by one ``CreateTopicResult`` per topic, in order."""
    topics: tuple  # of NewTopic
    validate_only: bool = False


@dataclass(frozen=True)
class DeleteTopicsRequest:
    names: tuple[str, ...]


@dataclass(frozen=True)
class TopicError:
    """One topic's outcome of DeleteTopics."""
    name: str
    error_code: ErrorCode
    error_message: str | None = None


@dataclass(frozen=True)
class CreatePartitionsRequest:
    name: str
    count: int
    assignments: tuple[tuple[int, ...], ...] | None = None   # None (Kafka's null) differs from no partitions


@dataclass(frozen=True)
class ApiError:
    """An outcome without further data: CreatePartitions' answer."""
    error_code: ErrorCode
    error_message: str | None = None


@dataclass(frozen=True)
class AllocateProducerIdsRequest:
    broker_id: int
    broker_epoch: int


@dataclass(frozen=True)
class ProducerIdsBlock:
    error_code: ErrorCode
    producer_id_start: int = -1
    producer_id_len: int = 0


# == ISR changes ======================================================================================================
@dataclass(frozen=True)
class IsrMember:
    """A proposed ISR member with the broker epoch it fetched with (-1: unknown), KIP-903."""
    broker_id: int
    broker_epoch: int = -1


@dataclass(frozen=True)
class AlterPartitionRequest:
    """Answered by ``AlterPartitionResult`` (cluster/metadata/controller.py)."""
    broker_id: int
    broker_epoch: int
    topic_id: uuid.UUID
    partition: int
    leader_epoch: int
    partition_epoch: int
    new_isr: tuple[IsrMember, ...]


# == the quorum =======================================================================================================
@dataclass(frozen=True)
class DescribeQuorumRequest:
    """No arguments: answered by the Raft leader's ``QuorumInfo`` (cluster/raft)."""


# == reassignments and elections ======================================================================================
@dataclass(frozen=True)
class ReassignmentTarget:
    topic: str
    partition: int
    replicas: tuple[int, ...] | None   # None cancels the partition's reassignment


@dataclass(frozen=True)
class AlterReassignmentsRequest:
    partitions: tuple[ReassignmentTarget, ...]


@dataclass(frozen=True)
class PartitionResult:
    """One partition's outcome of AlterPartitionReassignments or ElectLeaders."""
    topic: str
    partition: int
    error_code: ErrorCode
    error_message: str | None = None


@dataclass(frozen=True)
class ListReassignmentsRequest:
    partitions: tuple[TopicPartition, ...] | None = None   # None: every partition being moved


@dataclass(frozen=True)
class PartitionReassignment:
    """A partition being moved (KIP-455): its replicas now, and those being added and removed."""
    topic: str
    partition: int
    replicas: tuple[int, ...]
    adding_replicas: tuple[int, ...] = ()
    removing_replicas: tuple[int, ...] = ()


@dataclass(frozen=True)
class ElectLeadersRequest:
    election_type: int   # ELECTION_PREFERRED or ELECTION_UNCLEAN (cluster/metadata/controller.py)
    partitions: tuple[TopicPartition, ...] | None = None   # None: every partition
