"""Partition reassignment (KIP-455) and leader elections (KIP-460, auto rebalance) in the pure controller."""

from __future__ import annotations

import pytest
from metadata_testlib import Harness

from cluster.core.errors import ErrorCode
from cluster.metadata import ControllerConfig, MetadataDelta, NewTopic
from cluster.metadata.controller import ELECTION_PREFERRED, ELECTION_UNCLEAN, OngoingReassignment
from cluster.metadata.snapshot import decode_snapshot, encode_snapshot, image_from_records, image_to_records


@pytest.fixture
def cluster4():
    h = Harness(ControllerConfig(default_replication_factor=3))
    h.start_brokers(4)
    h.commit(h.controller.create_topics([NewTopic("t", assignments={0: [0, 1, 2], 1: [1, 2, 0]})]))
    return h


def part(h, partition=0, topic="t"):
    return h.image.topics.by_name[topic].partitions[partition]


def alter_isr(h, isr, partition=0, topic="t"):
    """The partition leader's AlterPartition with its current epochs."""
    p = part(h, partition, topic)
    topic_id = h.image.topics.by_name[topic].topic_id
    epoch = h.image.cluster.brokers[p.leader].broker_epoch
    return h.controller.alter_partition(p.leader, epoch, topic_id, partition, p.leader_epoch, p.partition_epoch, isr)


def reassign(h, target, partition=0, topic="t"):
    return h.commit(h.controller.alter_partition_reassignments([(topic, partition, target)]))


def test_start_sets_replicas_adding_and_removing(cluster4):
    response = reassign(cluster4, [1, 2, 3])
    assert response == {("t", 0): (ErrorCode.NONE, None)}
    p = part(cluster4)
    assert (p.replicas, p.adding_replicas, p.removing_replicas) == ((1, 2, 3, 0), (3,), (0,))
    assert (p.isr, p.leader) == ((0, 1, 2), 0)  # nothing moves until broker 3 is caught up
    listed = cluster4.controller.list_partition_reassignments()
    assert listed == {("t", 0): OngoingReassignment((1, 2, 3, 0), (3,), (0,))}
    assert cluster4.controller.list_partition_reassignments([("t", 1), ("nope", 0)]) == {}


def test_completes_when_adding_replica_joins_isr_and_moves_leader_off_removed(cluster4):
    h = cluster4
    reassign(h, [1, 2, 3])
    epoch_before = part(h).leader_epoch
    result = alter_isr(h, [0, 1, 2, 3])
    assert result.records[0].replicas == [1, 2, 3] and result.records[0].adding_replicas == []
    response = h.commit(result)
    p = part(h)
    assert (p.replicas, p.isr, p.adding_replicas, p.removing_replicas) == ((1, 2, 3), (1, 2, 3), (), ())
    assert p.leader == 1 and p.leader_epoch == epoch_before + 1  # the old leader 0 was removed
    assert response.leader == 1 and response.isr == (1, 2, 3)
    assert h.controller.list_partition_reassignments() == {}


def test_isr_change_without_the_adding_replica_does_not_complete(cluster4):
    h = cluster4
    reassign(h, [1, 2, 3])
    h.commit(alter_isr(h, [0, 1]))
    assert part(h).is_reassigning() and part(h).isr == (0, 1)


def test_reassignment_that_only_removes_completes_at_once(cluster4):
    h = cluster4
    reassign(h, [2, 1])
    p = part(h)
    assert (p.replicas, p.isr, p.leader, p.is_reassigning()) == ((2, 1), (1, 2), 2, False)  # first of the target


def test_cancel_reverts_and_cancel_of_nothing_errors(cluster4):
    h = cluster4
    assert reassign(h, None)[("t", 0)][0] == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
    reassign(h, [3, 2, 1])
    assert part(h).replicas == (3, 2, 1, 0)
    assert reassign(h, None) == {("t", 0): (ErrorCode.NONE, None)}
    p = part(h)
    # As Kafka's PartitionReassignmentRevert: the replicas minus the adding ones, in their current order.
    assert (p.replicas, p.isr, p.leader, p.is_reassigning()) == ((2, 1, 0), (0, 1, 2), 0, False)


def test_cancel_drops_adding_replicas_from_the_isr(cluster4):
    h = cluster4
    h.commit(h.controller.create_topics([NewTopic("u", assignments={0: [0, 1]})]))
    reassign(h, [2, 3], topic="u")  # adding 2,3; removing 0,1
    h.commit(alter_isr(h, [0, 1, 2], topic="u"))  # 2 caught up, 3 not yet
    assert part(h, topic="u").isr == (0, 1, 2)
    reassign(h, None, topic="u")
    p = part(h, topic="u")
    assert (p.replicas, p.isr, p.is_reassigning()) == ((0, 1), (0, 1), False)


def test_new_target_replaces_a_reassignment_in_progress(cluster4):
    h = cluster4
    reassign(h, [1, 2, 3])
    reassign(h, [0, 1, 2])  # back to the original: 3 is now removed and nothing is added
    p = part(h)
    assert (p.replicas, p.isr, p.is_reassigning(), p.leader) == ((0, 1, 2), (0, 1, 2), False, 0)


@pytest.mark.parametrize("target, error", [
    ([], ErrorCode.INVALID_REPLICA_ASSIGNMENT),
    ([1, 1, 2], ErrorCode.INVALID_REPLICA_ASSIGNMENT),
    ([1, 2, 9], ErrorCode.INVALID_REPLICA_ASSIGNMENT),
])
def test_invalid_targets(cluster4, target, error):
    result = cluster4.controller.alter_partition_reassignments([("t", 0, target)])
    assert result.records == () and result.response[("t", 0)][0] == error


def test_unknown_partition_and_duplicates(cluster4):
    result = cluster4.controller.alter_partition_reassignments(
        [("nope", 0, [1]), ("t", 7, [1]), ("t", 0, [1, 2, 3]), ("t", 0, [3, 2, 1])])
    assert result.response[("nope", 0)][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert result.response[("t", 7)][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert result.response[("t", 0)][0] == ErrorCode.INVALID_REQUEST
    assert len(result.records) == 1


def test_removed_replica_is_deleted_by_its_broker_and_added_one_follows(cluster4):
    h = cluster4
    reassign(h, [1, 2, 3])
    delta = MetadataDelta(h.image)
    start = alter_isr(h, [0, 1, 2, 3])
    for record in start.records:
        delta.replay(record)
    changes_0 = delta.local_changes(0)
    topic_id = h.image.topics.by_name["t"].topic_id
    assert ("t", topic_id, 0) in changes_0.deletes
    assert ("t", 0) in delta.local_changes(1).leaders and ("t", 0) in delta.local_changes(1).elected_leaders


def test_adding_replica_becomes_a_follower_when_the_reassignment_starts(cluster4):
    h = cluster4
    delta = MetadataDelta(h.image)
    for record in h.controller.alter_partition_reassignments([("t", 0, [1, 2, 3])]).records:
        delta.replay(record)
    assert ("t", 0) in delta.local_changes(3).followers
    assert not delta.local_changes(0).deletes  # the leaving replica serves until completion


def test_snapshot_round_trip_keeps_reassignment_state(cluster4):
    h = cluster4
    reassign(h, [1, 2, 3])
    rebuilt = image_from_records(image_to_records(h.image), h.image.offset)
    assert rebuilt.topics.by_name["t"].partitions[0] == part(h)
    decoded = decode_snapshot(encode_snapshot(h.image, h.image.offset + 1, 1))
    assert decoded.image.topics.by_name["t"].partitions[0].adding_replicas == (3,)


# ---- leader elections -----------------------------------------------------------------------------


def fence_and_return(h, broker_id, now_ms):
    h.heartbeat(broker_id, now_ms, want_fence=True)
    h.heartbeat(broker_id, now_ms)  # unfenced again: leadership does not come back by itself


def test_unfence_does_not_move_preferred_leadership_back(cluster4):
    h = cluster4
    fence_and_return(h, 0, 1)
    assert part(h).leader == 1 and part(h).replicas[0] == 0
    h.commit(alter_isr(h, [1, 2, 0]))  # 0 catches up and rejoins the ISR
    assert part(h).leader == 1


def test_preferred_election(cluster4):
    h = cluster4
    fence_and_return(h, 0, 1)
    no_isr = h.controller.elect_leaders(ELECTION_PREFERRED, [("t", 0)])
    assert no_isr.records == () and no_isr.response[("t", 0)][0] == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
    h.commit(alter_isr(h, [1, 2, 0]))
    result = h.controller.elect_leaders(ELECTION_PREFERRED, [("t", 0), ("t", 1), ("x", 0)])
    assert result.response[("t", 0)] == (ErrorCode.NONE, None)
    assert result.response[("t", 1)][0] == ErrorCode.ELECTION_NOT_NEEDED
    assert result.response[("x", 0)][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    epoch = part(h).leader_epoch
    h.commit(result)
    assert part(h).leader == 0 and part(h).leader_epoch == epoch + 1


def test_elect_all_reports_only_elections_made(cluster4):
    h = cluster4
    fence_and_return(h, 0, 1)
    h.commit(alter_isr(h, [1, 2, 0]))
    result = h.controller.elect_preferred_leaders()
    assert result.response == {("t", 0): (ErrorCode.NONE, None)}
    h.commit(result)
    assert h.controller.elect_preferred_leaders().response == {}


def test_unclean_election(cluster4):
    h = cluster4
    assert h.controller.elect_leaders(ELECTION_UNCLEAN, [("t", 0)]).response[("t", 0)][0] == \
        ErrorCode.ELECTION_NOT_NEEDED
    h.commit(h.controller.create_topics([NewTopic("one", assignments={0: [3, 2]})]))
    h.commit(alter_isr(h, [3], topic="one"))
    h.heartbeat(3, 1, want_fence=True)
    assert part(h, topic="one").leader == -1
    result = h.controller.elect_leaders(ELECTION_UNCLEAN, [("one", 0)])
    assert result.response[("one", 0)] == (ErrorCode.NONE, None)
    h.commit(result)
    assert (part(h, topic="one").leader, part(h, topic="one").isr) == (2, (2,))
    h.heartbeat(2, 1, want_fence=True)
    failed = h.controller.elect_leaders(ELECTION_UNCLEAN, [("one", 0)])
    assert failed.response[("one", 0)][0] == ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE


def test_rebalance_respects_the_imbalance_ratio():
    h = Harness(ControllerConfig())
    h.start_brokers(3)
    # broker 0 prefers 10 partitions; after a bounce it leads none of them
    h.commit(h.controller.create_topics([NewTopic("r", assignments={i: [0, 1] for i in range(10)})]))
    fence_and_return(h, 0, 1)
    for i in range(10):
        h.commit(alter_isr(h, [1, 0], partition=i, topic="r"))
    # give one back by hand: 9 of 10 not led = 90% > 10%
    h.commit(h.controller.elect_preferred_leaders([("r", 0)]))
    assert h.controller.rebalance_leaders(95).records == ()  # 90% is not above 95%
    result = h.controller.rebalance_leaders(10)
    assert len(result.records) == 9 and ("r", 9) in result.response
    h.commit(result)
    assert all(part(h, i, "r").leader == 0 for i in range(10))
    assert h.controller.rebalance_leaders(0).records == ()


def test_rebalance_skips_partitions_whose_preferred_replica_is_not_in_the_isr():
    h = Harness(ControllerConfig())
    h.start_brokers(3)
    h.commit(h.controller.create_topics([NewTopic("r", assignments={0: [0, 1], 1: [0, 1]})]))
    fence_and_return(h, 0, 1)
    h.commit(alter_isr(h, [1, 0], partition=0, topic="r"))  # partition 1's ISR still lacks 0
    result = h.controller.rebalance_leaders(10)
    assert result.response == (("r", 0),)


def test_rebalance_leaves_partitions_being_reassigned_alone():
    h = Harness(ControllerConfig())
    h.start_brokers(4)
    h.commit(h.controller.create_topics([NewTopic("r", assignments={0: [0, 1]})]))
    fence_and_return(h, 0, 1)
    h.commit(alter_isr(h, [1, 0], topic="r"))
    h.commit(h.controller.alter_partition_reassignments([("r", 0, [0, 1, 3])]))  # 3 still catching up
    assert h.controller.rebalance_leaders(0).records == ()
