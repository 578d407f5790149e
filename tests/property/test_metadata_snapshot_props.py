"""Snapshots of images reached by random controller histories rebuild the same image.

The histories come from the controller-invariants model (registrations, fencing, controlled shutdown,
topic creation/deletion/growth, ISR changes, producer-id blocks).  For every image along the way: the
snapshot payload decodes to an equal image; and a snapshot loaded over any EARLIER image of the same
history (a follower that fell behind) reaches the later image, reporting as local changes exactly the
partitions whose registration differs for that broker.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_metadata_controller_invariants import BROKERS, Model, ops  # tests/property is on sys.path

from cluster.metadata import MetadataImage, decode_snapshot, encode_snapshot, image_to_records, snapshot_delta
from cluster.metadata.snapshot import image_from_records


def _history(seed: int, operations) -> list[MetadataImage]:
    model = Model(seed)
    images = [model.image]
    for broker in range(4):
        model.op_register(broker, 0)
        model.op_heartbeat(broker, False, False, 0)
    model.op_create(0, 4, 3)
    images.append(model.image)
    for op in operations:
        model.run(op)
        images.append(model.image)
    return images


def _local(image: MetadataImage, broker: int) -> dict:
    """(topic id, partition) -> registration of every partition ``broker`` holds a replica of."""
    return {(topic.topic_id, index): registration
            for topic in image.topics.by_id.values() for index, registration in topic.partitions.items()
            if broker in registration.replicas}


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.lists(ops, min_size=5, max_size=50), st.data())
def test_snapshot_of_any_image_rebuilds_it(seed, operations, data):
    images = _history(seed, operations)
    final = images[-1]
    assert image_from_records(image_to_records(final), final.offset) == final
    decoded = decode_snapshot(encode_snapshot(final, final.offset + 1, 5))
    assert decoded.image == final and (decoded.end_offset, decoded.epoch) == (final.offset + 1, 5)

    older = images[data.draw(st.integers(0, len(images) - 1), label="older image")]
    delta = snapshot_delta(older, final)
    assert delta.apply() == final
    for broker in range(BROKERS):
        changes = delta.local_changes(broker)
        before, after = _local(older, broker), _local(final, broker)
        changed = {key for key, registration in after.items() if before.get(key) != registration}
        reported = {(p.topic_id, p.partition) for p in (*changes.leaders.values(), *changes.followers.values())}
        assert reported == changed
        assert {(topic_id, index) for _, topic_id, index in changes.deletes} == set(before) - set(after)
        assert all(after[(p.topic_id, p.partition)].leader == broker for p in changes.leaders.values())
