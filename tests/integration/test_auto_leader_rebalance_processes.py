"""auto.leader.rebalance.enable on three broker processes: the active controller's periodic check
(``leader.imbalance.check.interval.seconds``) gives leadership back to preferred replicas.

The imbalance is made with a reassignment that only reorders the replicas (it completes at once and keeps the
current leader), so no replica has to catch up.  With ``leader.imbalance.per.broker.percentage=0`` any broker
that prefers a partition it does not lead is over the threshold.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from cluster_process import ProcessCluster, admin, partition_leaders, wait_for  # tests/helpers (conftest.py)
from confluent_kafka.admin import NewTopic

from cluster.client import KafkaClient
from cluster.core.errors import ErrorCode

pytestmark = pytest.mark.timeout(120)


def test_periodic_check_moves_leadership_back_to_the_preferred_replica(tmp_path):
    cluster = ProcessCluster(tmp_path, "kraftpy-rebalance-" + uuid.uuid4().hex[:8], overrides={
        "auto.leader.rebalance.enable": "true", "leader.imbalance.check.interval.seconds": "2",
        "leader.imbalance.per.broker.percentage": "0"})
    cluster.start_all()
    try:
        client = admin(cluster.bootstrap)
        client.create_topics([NewTopic("rb", num_partitions=1, replica_assignment=[[1, 2, 3]])])["rb"].result(15)
        assert wait_for(lambda: partition_leaders(cluster.bootstrap, "rb") == {0: 1}, 10)

        async def reorder():
            async with KafkaClient(cluster.bootstrap) as kafka:
                return await kafka.alter_partition_reassignments({("rb", 0): [3, 1, 2]})
        assert asyncio.run(reorder()) == {("rb", 0): (ErrorCode.NONE, None)}
        started = time.monotonic()
        assert wait_for(lambda: partition_leaders(cluster.bootstrap, "rb") == {0: 3}, 15, 0.2), \
            "the periodic check never elected the preferred replica 3"
        print(f"preferred leader restored after {time.monotonic() - started:.1f} s")
    finally:
        cluster.stop_all()
