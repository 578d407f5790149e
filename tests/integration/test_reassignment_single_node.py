"""A single-node broker (no controller quorum) answers the reassignment and election APIs as Kafka would for a
one-broker cluster: nothing can move, no election is needed, another broker id is not registered."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster.client import KafkaClient
from cluster.core.errors import ErrorCode

pytestmark = pytest.mark.timeout(60)


def test_single_node_answers(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("solo", 2, 1)])["solo"].result(10)

    async def run():
        async with KafkaClient(broker.bootstrap) as client:
            altered = await client.alter_partition_reassignments(
                {("solo", 0): [broker.node_id], ("solo", 1): [broker.node_id, 7], ("solo", 5): [1]})
            cancelled = await client.alter_partition_reassignments({("solo", 1): None})
            listed = await client.list_partition_reassignments()
            elected = await client.elect_leaders([("solo", 0), ("nope", 0)])
            every = await client.elect_leaders(None)
            return altered, cancelled, listed, elected, every
    altered, cancelled, listed, elected, every = asyncio.run(run())
    assert altered[("solo", 0)] == (ErrorCode.NONE, None)
    assert altered[("solo", 1)][0] == ErrorCode.INVALID_REPLICA_ASSIGNMENT and "7" in altered[("solo", 1)][1]
    assert altered[("solo", 5)][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert cancelled[("solo", 1)][0] == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
    assert listed == {}
    assert elected[("solo", 0)][0] == ErrorCode.ELECTION_NOT_NEEDED
    assert elected[("nope", 0)][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert every == {}
    result = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("solo", 1)]).result(10)
    assert next(iter(result.values())).code() == ErrorCode.ELECTION_NOT_NEEDED
