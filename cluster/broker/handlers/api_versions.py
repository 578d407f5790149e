"""ApiVersions: which APIs and version ranges this broker implements.

Only ranges whose semantics are implemented are advertised, because every client picks
min(its max, our max) and trusts the answer (reference/kafka-protocol.md §3).  Produce is advertised from
v0 although only v3+ is accepted: Debian's kcat (librdkafka 2.0.2) silently stops compressing when Produce's
minimum is above 0 (KAFKA-18659), and v0-2 requests are answered with UNSUPPORTED_VERSION.
"""

from __future__ import annotations

from cluster.broker.handlers.context import RequestContext
from cluster.wire.messages import api_versions_response as avr

API_PRODUCE, API_FETCH, API_LIST_OFFSETS, API_METADATA = 0, 1, 2, 3
API_API_VERSIONS, API_CREATE_TOPICS, API_DELETE_TOPICS, API_INIT_PRODUCER_ID = 18, 19, 20, 22
API_OFFSET_FOR_LEADER_EPOCH, API_DESCRIBE_CONFIGS, API_CREATE_PARTITIONS = 23, 32, 37
API_OFFSET_COMMIT, API_OFFSET_FETCH, API_FIND_COORDINATOR, API_JOIN_GROUP = 8, 9, 10, 11
API_HEARTBEAT, API_LEAVE_GROUP, API_SYNC_GROUP, API_DESCRIBE_GROUPS = 12, 13, 14, 15
API_LIST_GROUPS, API_DELETE_GROUPS = 16, 42
API_ELECT_LEADERS, API_ALTER_PARTITION_REASSIGNMENTS, API_LIST_PARTITION_REASSIGNMENTS = 43, 45, 46

# api_key -> (min advertised version, max advertised version)
SUPPORTED_VERSIONS: dict[int, tuple[int, int]] = {
    API_PRODUCE: (0, 9),
    API_FETCH: (4, 12),
    API_LIST_OFFSETS: (1, 7),
    API_METADATA: (0, 12),
    API_API_VERSIONS: (0, 4),
    API_CREATE_TOPICS: (2, 4),
    API_DELETE_TOPICS: (1, 4),
    API_INIT_PRODUCER_ID: (0, 4),
    API_OFFSET_FOR_LEADER_EPOCH: (2, 4),
    API_DESCRIBE_CONFIGS: (1, 4),
    API_CREATE_PARTITIONS: (0, 3),
    # Classic consumer groups.  Debian kcat (librdkafka 2.0.2) needs JoinGroup/SyncGroup/Heartbeat/LeaveGroup
    # from v0 and OffsetFetch v1 (reference/kafka-protocol.md §2.3).
    API_FIND_COORDINATOR: (0, 3),
    API_JOIN_GROUP: (0, 5),
    API_SYNC_GROUP: (0, 3),
    API_HEARTBEAT: (0, 3),
    API_LEAVE_GROUP: (0, 3),
    API_OFFSET_COMMIT: (2, 9),
    API_OFFSET_FETCH: (1, 7),
    API_DESCRIBE_GROUPS: (0, 5),
    API_LIST_GROUPS: (0, 4),
    API_DELETE_GROUPS: (0, 2),
    # Replica placement and leadership, decided by the active controller (handlers/reassignments.py).
    API_ELECT_LEADERS: (0, 2),
    API_ALTER_PARTITION_REASSIGNMENTS: (0, 0),
    API_LIST_PARTITION_REASSIGNMENTS: (0, 0),
}

# Produce versions that parse but whose (pre-RecordBatch v2) semantics we do not implement.
PRODUCE_MIN_ACCEPTED_VERSION = 3

_API_KEYS = [
    avr.ApiVersion(api_key=key, min_version=low, max_version=high)
    for key, (low, high) in sorted(SUPPORTED_VERSIONS.items())
]


def handle_api_versions(context: RequestContext, request: object) -> avr.ApiVersionsResponse:
    return avr.ApiVersionsResponse(error_code=0, api_keys=list(_API_KEYS), throttle_time_ms=0)


def unsupported_api_versions_response() -> avr.ApiVersionsResponse:
    """KIP-511: an ApiVersions version we do not know is answered in v0 form with our own range."""
    low, high = SUPPORTED_VERSIONS[API_API_VERSIONS]
    return avr.ApiVersionsResponse(
        error_code=35, api_keys=[avr.ApiVersion(api_key=API_API_VERSIONS, min_version=low, max_version=high)]
    )
