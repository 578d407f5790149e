"""Replaying every record type into an image, sub-image reuse, and what one broker must do (local_changes)."""

from __future__ import annotations

import uuid

import pytest

from cluster.core.errors import InvariantViolation
from cluster.metadata import BROKER_RESOURCE, NO_LEADER, TOPIC_RESOURCE, MetadataDelta, MetadataImage
from cluster.wire.metadata_records import (
    broker_registration_change_record as brc,
)
from cluster.wire.metadata_records import (
    config_record,
    feature_level_record,
    fence_broker_record,
    no_op_record,
    partition_change_record,
    partition_record,
    producer_ids_record,
    register_broker_record,
    remove_topic_record,
    topic_record,
    unfence_broker_record,
    unregister_broker_record,
)

T1 = uuid.UUID(int=101)
T2 = uuid.UUID(int=102)


def register(broker_id, epoch, rack=None):
    return register_broker_record.RegisterBrokerRecord(
        broker_id=broker_id, broker_epoch=epoch, incarnation_id=uuid.UUID(int=broker_id + 1), rack=rack,
        end_points=[register_broker_record.BrokerEndpoint(name="PLAINTEXT", host="h", port=9092 + broker_id)])


def partition(topic_id, index, replicas, leader, isr=None):
    return partition_record.PartitionRecord(partition_id=index, topic_id=topic_id, replicas=replicas,
                                            isr=isr or replicas, leader=leader, leader_epoch=0, partition_epoch=0)


def replay_all(image, records):
    delta = MetadataDelta(image)
    for record in records:
        delta.replay(record)
    return delta, delta.apply()


@pytest.fixture
def base():
    records = [register(0, 1), register(1, 2, rack="r1"), register(2, 3),
               topic_record.TopicRecord(name="a", topic_id=T1), partition(T1, 0, [0, 1], 0), partition(T1, 1, [1, 2], 1),
               topic_record.TopicRecord(name="b", topic_id=T2), partition(T2, 0, [2, 0], 2)]
    return replay_all(MetadataImage.EMPTY, records)[1]


def test_broker_records(base):
    broker = base.cluster.brokers[1]
    assert (broker.broker_epoch, broker.rack, broker.fenced, broker.endpoints[0].port) == (2, "r1", True, 9093)
    image = replay_all(base, [unfence_broker_record.UnfenceBrokerRecord(id=1, epoch=2)])[1]
    assert not image.cluster.brokers[1].fenced and image.cluster.brokers[1].is_active
    image = replay_all(image, [brc.BrokerRegistrationChangeRecord(broker_id=1, broker_epoch=2, in_controlled_shutdown=1)])[1]
    assert image.cluster.brokers[1].in_controlled_shutdown and not image.cluster.brokers[1].is_active
    image = replay_all(image, [fence_broker_record.FenceBrokerRecord(id=1, epoch=2)])[1]
    assert image.cluster.brokers[1].fenced
    image = replay_all(image, [brc.BrokerRegistrationChangeRecord(broker_id=1, broker_epoch=2, fenced=-1)])[1]
    assert not image.cluster.brokers[1].fenced
    image = replay_all(image, [unregister_broker_record.UnregisterBrokerRecord(broker_id=1, broker_epoch=2)])[1]
    assert 1 not in image.cluster.brokers and base.cluster.brokers[1].rack == "r1"  # base untouched


def test_change_for_a_stale_broker_epoch_is_a_bug(base):
    with pytest.raises(InvariantViolation):
        replay_all(base, [fence_broker_record.FenceBrokerRecord(id=1, epoch=99)])


def test_topic_and_partition_records(base):
    assert set(base.topics.by_name) == {"a", "b"} and base.topics.by_name["a"] is base.topics.by_id[T1]
    change = partition_change_record.PartitionChangeRecord(partition_id=0, topic_id=T1, isr=[1], leader=1)
    image = replay_all(base, [change])[1]
    p = image.topics.get_partition(T1, 0)
    assert (p.leader, p.isr, p.leader_epoch, p.partition_epoch) == (1, (1,), 1, 1)
    isr_only = partition_change_record.PartitionChangeRecord(partition_id=0, topic_id=T1, isr=[1, 0])
    p = replay_all(image, [isr_only])[1].topics.get_partition(T1, 0)
    assert (p.leader, p.isr, p.leader_epoch, p.partition_epoch) == (1, (1, 0), 1, 2)  # no leader: epoch kept
    leaderless = partition_change_record.PartitionChangeRecord(partition_id=1, topic_id=T1, leader=NO_LEADER)
    assert replay_all(base, [leaderless])[1].topics.get_partition(T1, 1).leader_epoch == 1
    image.check_invariants()


def test_remove_topic(base):
    image = replay_all(base, [remove_topic_record.RemoveTopicRecord(topic_id=T1)])[1]
    assert set(image.topics.by_name) == {"b"} and T1 not in image.topics.by_id
    assert image.topics.by_id[T2] is base.topics.by_id[T2]
    # delete and re-create a name within one delta
    t3 = uuid.UUID(int=103)
    image = replay_all(base, [remove_topic_record.RemoveTopicRecord(topic_id=T1),
                              topic_record.TopicRecord(name="a", topic_id=t3), partition(t3, 0, [0], 0)])[1]
    assert image.topics.by_name["a"].topic_id == t3 and T1 not in image.topics.by_id
    image.check_invariants()


def test_config_producer_id_feature_and_noop_records(base):
    records = [config_record.ConfigRecord(resource_type=TOPIC_RESOURCE, resource_name="a", name="retention.ms", value="5"),
               config_record.ConfigRecord(resource_type=BROKER_RESOURCE, resource_name="1", name="x", value="y"),
               producer_ids_record.ProducerIdsRecord(broker_id=0, broker_epoch=1, next_producer_id=1000),
               feature_level_record.FeatureLevelRecord(name="metadata.version", feature_level=21),
               no_op_record.NoOpRecord()]
    image = replay_all(base, records)[1]
    assert image.configs.topic_config("a") == {"retention.ms": "5"}
    assert image.configs.broker_config("1") == {"x": "y"}
    assert image.producer_ids.next_producer_id == 1000
    assert image.features.finalized_levels == {"metadata.version": 21}
    deleted = replay_all(image, [config_record.ConfigRecord(resource_type=TOPIC_RESOURCE, resource_name="a",
                                                            name="retention.ms", value=None)])[1]
    assert deleted.configs.topic_config("a") == {}
    with pytest.raises(InvariantViolation):  # producer id blocks never go backwards
        replay_all(image, [producer_ids_record.ProducerIdsRecord(broker_id=0, broker_epoch=1, next_producer_id=10)])


def test_apply_reuses_untouched_sub_images(base):
    image = replay_all(base, [config_record.ConfigRecord(resource_type=TOPIC_RESOURCE, resource_name="a",
                                                         name="k", value="v")])[1]
    assert image.cluster is base.cluster and image.topics is base.topics
    assert image.producer_ids is base.producer_ids and image.features is base.features
    assert image.configs is not base.configs
    change = partition_change_record.PartitionChangeRecord(partition_id=0, topic_id=T1, isr=[0])
    image2 = replay_all(image, [change])[1]
    assert image2.configs is image.configs and image2.cluster is image.cluster
    assert image2.topics.by_id[T2] is image.topics.by_id[T2]  # the untouched topic is shared
    assert image2.topics.by_id[T1] is not image.topics.by_id[T1]
    assert image2.topics.by_id[T1].partitions[1] is image.topics.by_id[T1].partitions[1]
    empty = MetadataDelta(image2).apply()
    assert empty == image2 and empty.topics is image2.topics


def test_images_are_read_only(base):
    with pytest.raises(TypeError):
        base.topics.by_name["x"] = None
    with pytest.raises(AttributeError):
        base.offset = 5


def test_offsets_must_increase(base):
    delta = MetadataDelta(base).replay(no_op_record.NoOpRecord(), 7)
    assert delta.apply().offset == 7
    with pytest.raises(InvariantViolation):
        delta.replay(no_op_record.NoOpRecord(), 7)


def test_local_changes_leaders_followers_deletes(base):
    records = [partition_change_record.PartitionChangeRecord(partition_id=0, topic_id=T1, leader=1, isr=[1, 0]),
               partition_change_record.PartitionChangeRecord(partition_id=1, topic_id=T1, replicas=[2], isr=[2],
                                                             leader=2),
               remove_topic_record.RemoveTopicRecord(topic_id=T2),
               topic_record.TopicRecord(name="c", topic_id=uuid.UUID(int=9)), partition(uuid.UUID(int=9), 0, [0, 1], 0)]
    delta, _ = replay_all(base, records)
    zero = delta.local_changes(0)
    assert set(zero.leaders) == {("c", 0)} and zero.elected_leaders == {("c", 0)}
    assert set(zero.followers) == {("a", 0)} and zero.followers[("a", 0)].registration.leader == 1
    assert zero.deletes == {("b", T2, 0)}
    one = delta.local_changes(1)
    assert set(one.leaders) == {("a", 0)} and one.leaders[("a", 0)].registration.leader_epoch == 1
    assert ("a", 0) in one.elected_leaders
    assert set(one.followers) == {("c", 0)}
    assert one.deletes == {("a", T1, 1)}  # removed from a-1's replicas
    two = delta.local_changes(2)
    assert set(two.leaders) == {("a", 1)} and two.deletes == {("b", T2, 0)} and not two.followers
    assert delta.local_changes(7) == type(zero)(frozenset(), {}, {}, frozenset())


def test_local_changes_isr_only_change_is_not_a_new_election(base):
    delta, _ = replay_all(base, [partition_change_record.PartitionChangeRecord(partition_id=0, topic_id=T1, isr=[0])])
    changes = delta.local_changes(0)
    assert set(changes.leaders) == {("a", 0)} and not changes.elected_leaders
    assert set(delta.local_changes(1).followers) == {("a", 0)}
