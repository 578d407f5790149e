"""Replica placement and leadership administration for our client: AlterPartitionReassignments,
ListPartitionReassignments (KIP-455) and ElectLeaders (KIP-460).

These are what ``kafka-reassign-partitions.sh`` and ``kafka-leader-election.sh`` do through the Java
AdminClient, and what ``kraftpy topics reassign`` / ``kraftpy topics elect-leaders`` need.  Requests go to the
controller the metadata names (any KRaft broker forwards); NOT_CONTROLLER is retried after a metadata refresh.
A top-level error raises; per-partition errors come back in the result, since a tool reports them one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cluster.client.connection import ApiKey
from cluster.client.errors import error_from_code
from cluster.core.errors import ErrorCode
from cluster.wire.messages import alter_partition_reassignments_request as aprq
from cluster.wire.messages import elect_leaders_request as elq
from cluster.wire.messages import list_partition_reassignments_request as lprq

__all__ = ["ELECTION_PREFERRED", "ELECTION_UNCLEAN", "PartitionReassignment", "ReassignmentsMixin"]

ELECTION_PREFERRED = 0
ELECTION_UNCLEAN = 1

PartitionKey = tuple[str, int]
PartitionOutcome = tuple[ErrorCode, str | None]


@dataclass(frozen=True)
class PartitionReassignment:
    """One partition being moved: all its replicas now, the ones still catching up, the ones to drop."""

    replicas: tuple[int, ...]
    adding_replicas: tuple[int, ...]
    removing_replicas: tuple[int, ...]


def _by_topic(partitions: Iterable[PartitionKey]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for topic, partition in partitions:
        grouped.setdefault(topic, []).append(partition)
    return grouped


def _outcome(code: int, message: str | None) -> PartitionOutcome:
    try:
        return ErrorCode(code), message
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR, f"error code {code}: {message}"


class ReassignmentsMixin:
    """Reassignment and election APIs of ``KafkaClient`` (which provides _admin_with_retry)."""

    async def alter_partition_reassignments(
        self, targets: Mapping[PartitionKey, Sequence[int] | None], *, timeout_ms: int = 30_000
    ) -> dict[PartitionKey, PartitionOutcome]:
        """Starts (target replica list) or cancels (None) the move of each partition."""
        grouped: dict[str, list] = {}
        for (topic, partition), replicas in targets.items():
            grouped.setdefault(topic, []).append(aprq.ReassignablePartition(
                partition_index=partition, replicas=None if replicas is None else list(replicas)))
        request = aprq.AlterPartitionReassignmentsRequest(
            timeout_ms=timeout_ms,
            topics=[aprq.ReassignableTopic(name=name, partitions=parts) for name, parts in grouped.items()])
        response = await self._admin_with_retry(ApiKey.ALTER_PARTITION_REASSIGNMENTS, request, timeout_ms,
                                                lambda r: [r.error_code])
        if response.error_code:
            raise error_from_code(response.error_code, response.error_message, api="AlterPartitionReassignments")
        return {(t.name, p.partition_index): _outcome(p.error_code, p.error_message)
                for t in response.responses for p in t.partitions}

    async def list_partition_reassignments(
        self, partitions: Iterable[PartitionKey] | None = None, *, timeout_ms: int = 30_000
    ) -> dict[PartitionKey, PartitionReassignment]:
        """The reassignments in progress (all of them, or among ``partitions``)."""
        topics = None
        if partitions is not None:
            topics = [lprq.ListPartitionReassignmentsTopics(name=name, partition_indexes=indexes)
                      for name, indexes in _by_topic(partitions).items()]
        request = lprq.ListPartitionReassignmentsRequest(timeout_ms=timeout_ms, topics=topics)
        response = await self._admin_with_retry(ApiKey.LIST_PARTITION_REASSIGNMENTS, request, timeout_ms,
                                                lambda r: [r.error_code])
        if response.error_code:
            raise error_from_code(response.error_code, response.error_message, api="ListPartitionReassignments")
        return {(t.name, p.partition_index): PartitionReassignment(tuple(p.replicas), tuple(p.adding_replicas),
                                                                   tuple(p.removing_replicas))
                for t in response.topics for p in t.partitions}

    async def elect_leaders(
        self, partitions: Iterable[PartitionKey] | None = None, *, election_type: int = ELECTION_PREFERRED,
        timeout_ms: int = 30_000
    ) -> dict[PartitionKey, PartitionOutcome]:
        """ElectLeaders; with ``partitions`` None every partition is considered and only moves are reported."""
        topic_partitions = None
        if partitions is not None:
            topic_partitions = [elq.TopicPartitions(topic=name, partitions=indexes)
                                for name, indexes in _by_topic(partitions).items()]
        request = elq.ElectLeadersRequest(election_type=election_type, topic_partitions=topic_partitions,
                                          timeout_ms=timeout_ms)
        response = await self._admin_with_retry(ApiKey.ELECT_LEADERS, request, timeout_ms,
                                                lambda r: [r.error_code])
        if response.error_code:
            raise error_from_code(response.error_code, None, api="ElectLeaders")
        return {(t.topic, p.partition_id): _outcome(p.error_code, p.error_message)
                for t in response.replica_election_results for p in t.partition_result}
