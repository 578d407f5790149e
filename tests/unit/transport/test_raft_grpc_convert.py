"""Every Raft message survives the trip through its proto envelope unchanged (and the bytes on the wire)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cluster.core.errors import ErrorCode
from cluster.raft.log import LogEntry, OffsetAndEpoch, SnapshotId
from cluster.raft.messages import (
    BeginQuorumEpochRequest,
    BeginQuorumEpochResponse,
    EndQuorumEpochRequest,
    EndQuorumEpochResponse,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
    VoteRequest,
    VoteResponse,
)
from cluster.transport._generated.cluster.v1 import raft_pb2 as pb
from cluster.transport.raft_grpc import from_envelope, to_envelope

ids = st.integers(0, 2**31 - 1)
epochs = st.integers(0, 2**31 - 1)
offsets = st.integers(0, 2**63 - 1)
leaders = st.none() | ids
errors = st.sampled_from([ErrorCode.NONE, ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH,
                          ErrorCode.INCONSISTENT_CLUSTER_ID, ErrorCode.UNKNOWN_LEADER_EPOCH])
entries = st.builds(LogEntry, offsets, epochs, st.binary(max_size=64), st.booleans())
snapshot_ids = st.builds(SnapshotId, offsets, epochs)

messages = st.one_of(
    st.builds(VoteRequest, ids, ids, epochs, epochs, offsets, st.booleans()),
    st.builds(VoteResponse, ids, ids, errors, epochs, leaders, st.booleans(), epochs, st.booleans()),
    st.builds(BeginQuorumEpochRequest, ids, ids, epochs),
    st.builds(BeginQuorumEpochResponse, ids, ids, errors, epochs, leaders),
    st.builds(EndQuorumEpochRequest, ids, ids, epochs, st.lists(ids, max_size=5).map(tuple)),
    st.builds(EndQuorumEpochResponse, ids, ids, errors, epochs, leaders),
    st.builds(FetchRequest, ids, ids, epochs, offsets, epochs, offsets),
    st.builds(FetchResponse, ids, ids, errors, epochs, leaders, offsets, epochs, offsets, offsets,
              st.lists(entries, max_size=4).map(tuple), st.none() | st.builds(OffsetAndEpoch, offsets, epochs),
              st.none() | snapshot_ids),
    st.builds(FetchSnapshotRequest, ids, ids, epochs, snapshot_ids, offsets),
    st.builds(FetchSnapshotResponse, ids, ids, errors, epochs, leaders, snapshot_ids, offsets, offsets,
              st.binary(max_size=64), offsets),
)


@given(messages, st.text(max_size=22), st.text(alphabet="0123456789abcdef", max_size=32))
def test_every_message_round_trips_through_proto_bytes(message, cluster_id, directory_id):
    envelope = to_envelope(message, cluster_id=cluster_id, directory_id=directory_id)
    decoded = pb.RaftEnvelope.FromString(envelope.SerializeToString())
    assert decoded.cluster_id == cluster_id
    assert decoded.source_directory_id == directory_id
    assert from_envelope(decoded) == message


def test_unknown_leader_travels_as_minus_one():
    envelope = to_envelope(BeginQuorumEpochResponse(1, 2, ErrorCode.NONE, 3, None), cluster_id="c", directory_id="")
    assert envelope.begin_quorum_epoch_response.leader_id == -1


def test_every_message_kind_has_its_own_oneof_field():
    fields = {to_envelope(m, cluster_id="c", directory_id="").WhichOneof("message") for m in [
        VoteRequest(1, 2, 1, 0, 0, True), VoteResponse(1, 2, ErrorCode.NONE, 1, None, True, 1, True),
        BeginQuorumEpochRequest(1, 2, 1), BeginQuorumEpochResponse(1, 2, ErrorCode.NONE, 1, 1),
        EndQuorumEpochRequest(1, 2, 1, (3,)), EndQuorumEpochResponse(1, 2, ErrorCode.NONE, 1, 1),
        FetchRequest(1, 2, 1, 0, 0, 0), FetchResponse(1, 2, ErrorCode.NONE, 1, 1, 0, 0),
        FetchSnapshotRequest(1, 2, 1, SnapshotId(1, 1), 0),
        FetchSnapshotResponse(1, 2, ErrorCode.NONE, 1, 1, SnapshotId(1, 1), 0)]}
    assert len(fields) == 10


def test_an_empty_envelope_is_rejected():
    import pytest
    with pytest.raises(ValueError, match="without a message"):
        from_envelope(pb.RaftEnvelope(cluster_id="c", source_id=1, destination_id=2))
