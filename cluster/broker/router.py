"""Turns request frames into handler calls and handler results into response frames.

For every frame: decode the request header against the versions we advertise, decode the body with the
generated codec, call the API's handler, and encode its response with the matching response-header version.
Kafka's rules at this layer:
  * An unknown api_key, or a version outside our advertised range, closes the connection (Kafka's
    SocketServer does the same); the log line names the peer, key and version.
  * ApiVersions is the exception (KIP-511): any version is answered, a too-new one with a v0 body carrying
    UNSUPPORTED_VERSION and our range, and its response header is always v0.
  * A body that does not decode (truncated, bad lengths, bad UTF-8) closes the connection with a log line.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

from cluster.broker.handlers import (
    admin,
    api_versions,
    fetch,
    groups,
    metadata,
    offsets,
    produce,
    producer_ids,
    reassignments,
)
from cluster.broker.handlers.api_versions import SUPPORTED_VERSIONS
from cluster.broker.handlers.context import BrokerServices, RequestContext
from cluster.core.errors import ProtocolDecodeError
from cluster.transport.kafka_server import CloseConnection, KafkaConnection
from cluster.wire.headers import (
    UnsupportedApiError,
    UnsupportedApiVersionsError,
    decode_request_header,
    encode_response_header,
)
from cluster.wire.messages import API_KEYS, response_header_version

log = logging.getLogger("cluster.broker.router")

HANDLERS: dict[int, Callable] = {
    api_versions.API_API_VERSIONS: api_versions.handle_api_versions,
    api_versions.API_METADATA: metadata.handle_metadata,
    api_versions.API_PRODUCE: produce.handle_produce,
    api_versions.API_FETCH: fetch.handle_fetch,
    api_versions.API_LIST_OFFSETS: offsets.handle_list_offsets,
    api_versions.API_OFFSET_FOR_LEADER_EPOCH: offsets.handle_offset_for_leader_epoch,
    api_versions.API_INIT_PRODUCER_ID: producer_ids.handle_init_producer_id,
    api_versions.API_CREATE_TOPICS: admin.handle_create_topics,
    api_versions.API_DELETE_TOPICS: admin.handle_delete_topics,
    api_versions.API_CREATE_PARTITIONS: admin.handle_create_partitions,
    api_versions.API_DESCRIBE_CONFIGS: admin.handle_describe_configs,
    api_versions.API_FIND_COORDINATOR: groups.handle_find_coordinator,
    api_versions.API_JOIN_GROUP: groups.handle_join_group,
    api_versions.API_SYNC_GROUP: groups.handle_sync_group,
    api_versions.API_HEARTBEAT: groups.handle_heartbeat,
    api_versions.API_LEAVE_GROUP: groups.handle_leave_group,
    api_versions.API_OFFSET_COMMIT: groups.handle_offset_commit,
    api_versions.API_OFFSET_FETCH: groups.handle_offset_fetch,
    api_versions.API_DESCRIBE_GROUPS: groups.handle_describe_groups,
    api_versions.API_LIST_GROUPS: groups.handle_list_groups,
    api_versions.API_DELETE_GROUPS: groups.handle_delete_groups,
    api_versions.API_ELECT_LEADERS: reassignments.handle_elect_leaders,
    api_versions.API_ALTER_PARTITION_REASSIGNMENTS: reassignments.handle_alter_partition_reassignments,
    api_versions.API_LIST_PARTITION_REASSIGNMENTS: reassignments.handle_list_partition_reassignments,
}
assert set(HANDLERS) == set(SUPPORTED_VERSIONS), "every advertised API has a handler"


class RequestRouter:
    def __init__(self, services: BrokerServices) -> None:
        self._services = services
        self._metrics = services.metrics
        self._handlers = HANDLERS

    def dispatch(self, frame: bytes, connection: KafkaConnection):
        try:
            header, body_pos = decode_request_header(frame, 0, SUPPORTED_VERSIONS)
        except UnsupportedApiVersionsError as exc:
            log.info("ApiVersions v%d from %s is newer than ours; answering in v0 form",
                     exc.header.api_version, connection.peer)
            response = api_versions.unsupported_api_versions_response()
            return self._encode(API_KEYS[18].response_module, response, 0, exc.header.correlation_id, 0)
        except UnsupportedApiError as exc:
            raise CloseConnection(str(exc)) from None
        except ProtocolDecodeError as exc:
            raise CloseConnection(f"malformed request header: {exc}") from None
        spec = API_KEYS[header.api_key]
        try:
            request, end = spec.request_module.decode(frame, body_pos, header.api_version)
        except ProtocolDecodeError as exc:
            raise CloseConnection(f"malformed {spec.name} v{header.api_version} request: {exc}") from None
        context = RequestContext(self._services, header.api_version, header.correlation_id, header.client_id,
                                 connection.peer, getattr(connection, "listener_name", None))
        started = self._metrics.on_request(spec.name)
        result = self._handlers[header.api_key](context, request)
        header_version = response_header_version(header.api_key, header.api_version)
        if inspect.isawaitable(result):
            return self._finish(result, spec.response_module, header.api_version, header.correlation_id,
                                header_version, spec.name, started)
        self._metrics.on_response(spec.name, started, result)
        if result is None:
            return None
        return self._encode(spec.response_module, result, header.api_version, header.correlation_id,
                            header_version)

    async def _finish(self, awaitable, response_module, api_version, correlation_id, header_version, api_name,
                      started):
        result = await awaitable
        self._metrics.on_response(api_name, started, result)
        if result is None:
            return None
        return self._encode(response_module, result, api_version, correlation_id, header_version)

    @staticmethod
    def _encode(response_module, response, api_version: int, correlation_id: int, header_version: int):
        return [encode_response_header(correlation_id, header_version),
                response_module.encode(response, api_version)]
