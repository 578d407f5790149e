"""The RPCs of the metadata quorum as frozen dataclasses (not protobuf classes).

Why: the core must not depend on a transport.  The gRPC layer converts these to and from ``proto`` messages
in one place; the simulator passes them around as they are.  Each message names its ``source_id`` and
``destination_id`` so a transport (or the simulated network) can route it without looking inside.

The five request kinds follow KRaft (KIP-595/KIP-630/KIP-996), which differ from textbook Raft:
  * ``VoteRequest`` with ``pre_vote`` (KIP-996): a pre-vote asks "would you vote for me in
    ``candidate_epoch``?" without anyone changing state; a real vote is binding and persisted.
  * ``BeginQuorumEpochRequest``: a new leader announces itself, and repeats it every ``fetch_timeout / 2``
    to voters that have gone quiet (a heartbeat).  Replication itself is pulled, not pushed.
  * ``EndQuorumEpochRequest``: a resigning leader asks followers to elect, most caught-up first.
  * ``FetchRequest``/``FetchResponse``: followers pull entries; the leader answers with entries, a diverging
    epoch (truncate), or a snapshot id (fetch a snapshot).  Fetches also carry the follower's durable LEO,
    which is how the leader learns replication progress (there are no AppendEntries acks).
  * ``FetchSnapshotRequest``/``FetchSnapshotResponse``: chunked snapshot transfer by byte position.

Responses carry the responder's ``epoch`` and known ``leader_id`` so a stale node learns the current epoch
from any answer (Kafka's ``maybeHandleCommonResponse``).  ``None`` means "unknown leader" (Kafka's -1).
Responses echo the request fields the requester needs to recognise a stale or duplicated answer.
"""

from __future__ import annotations

import dataclasses

from cluster.core.errors import ErrorCode
from cluster.raft.log import LogEntry, OffsetAndEpoch, SnapshotId


@dataclasses.dataclass(frozen=True, slots=True)
class VoteRequest:
    source_id: int
    destination_id: int
    candidate_epoch: int      # the epoch the candidate runs in (a prospective's epoch + 1 for a pre-vote)
    last_offset_epoch: int    # epoch of the candidate's last entry (or of its snapshot; 0 for an empty log)
    last_offset: int          # the candidate's log end offset
    pre_vote: bool


@dataclasses.dataclass(frozen=True, slots=True)
class VoteResponse:
    source_id: int
    destination_id: int
    error_code: ErrorCode
    epoch: int                # the responder's epoch
    leader_id: int | None     # the leader the responder knows for ``epoch``
    vote_granted: bool
    candidate_epoch: int      # echo of the request
    pre_vote: bool            # echo of the request


@dataclasses.dataclass(frozen=True, slots=True)
class BeginQuorumEpochRequest:
    source_id: int            # the new leader
    destination_id: int
    leader_epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class BeginQuorumEpochResponse:
    source_id: int
    destination_id: int
    error_code: ErrorCode
    epoch: int
    leader_id: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class EndQuorumEpochRequest:
    source_id: int            # the resigning leader
    destination_id: int
    leader_epoch: int
    preferred_successors: tuple[int, ...]   # other voters, most caught-up first


@dataclasses.dataclass(frozen=True, slots=True)
class EndQuorumEpochResponse:
    source_id: int
    destination_id: int
    error_code: ErrorCode
    epoch: int
    leader_id: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class FetchRequest:
    source_id: int            # the fetching replica (voter or observer)
    destination_id: int
    current_leader_epoch: int
    fetch_offset: int         # the fetcher's durable log end offset
    last_fetched_epoch: int   # epoch of the entry at fetch_offset - 1 (snapshot epoch / 0 if none)
    high_watermark: int       # what the fetcher already knows; lets the leader park a fetch with no news


@dataclasses.dataclass(frozen=True, slots=True)
class FetchResponse:
    source_id: int
    destination_id: int
    error_code: ErrorCode
    epoch: int
    leader_id: int | None
    fetch_offset: int                       # echo of the request
    last_fetched_epoch: int                 # echo of the request
    high_watermark: int = 0
    log_start_offset: int = 0
    entries: tuple[LogEntry, ...] = ()
    diverging_epoch: OffsetAndEpoch | None = None   # truncate to this (end offset, epoch), then fetch again
    snapshot_id: SnapshotId | None = None           # fetch this snapshot: the offset is below log start


@dataclasses.dataclass(frozen=True, slots=True)
class FetchSnapshotRequest:
    source_id: int
    destination_id: int
    current_leader_epoch: int
    snapshot_id: SnapshotId
    position: int             # byte position of the wanted chunk


@dataclasses.dataclass(frozen=True, slots=True)
class FetchSnapshotResponse:
    source_id: int
    destination_id: int
    error_code: ErrorCode
    epoch: int
    leader_id: int | None
    snapshot_id: SnapshotId
    position: int             # echo: where ``chunk`` starts
    size_bytes: int = 0       # total size of the snapshot
    chunk: bytes = b""
    high_watermark: int = 0


RaftMessage = (
    VoteRequest | VoteResponse | BeginQuorumEpochRequest | BeginQuorumEpochResponse | EndQuorumEpochRequest
    | EndQuorumEpochResponse | FetchRequest | FetchResponse | FetchSnapshotRequest | FetchSnapshotResponse
)

REQUEST_TYPES = (VoteRequest, BeginQuorumEpochRequest, EndQuorumEpochRequest, FetchRequest, FetchSnapshotRequest)
