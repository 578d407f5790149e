"""Fetch: whole record batches below the high watermark, with Kafka's long-poll semantics.

A fetch answers at once when it has ``min_bytes`` of data, hit an error, or ``max_wait_ms`` is 0; otherwise it
parks until a partition's high watermark advances (woken by the flusher, not by polling) or ``max_wait_ms``
passes, then reads again.  Batches are returned whole, starting with the batch that contains the fetch
offset: clients skip the records before their position (reference/kafka-protocol.md §5 item 4).
``max_bytes`` bounds the response, except that the first batch of the first non-empty partition is always
returned so a consumer can never be stuck behind a batch larger than its limits (KIP-74).

Fetch sessions (KIP-227) are not kept: every response is a full response (session id 0), which every
client accepts; a full response lists every requested partition, as kafka-python insists.
"""

from __future__ import annotations

import asyncio

from cluster.broker.handlers.context import RequestContext
from cluster.core.errors import ErrorCode, KafkaError
from cluster.wire.messages import fetch_response as fr

ISOLATION_READ_COMMITTED = 1


def handle_fetch(context: RequestContext, request):
    if request.session_id != 0 or request.session_epoch > 0:
        error = ErrorCode.FETCH_SESSION_ID_NOT_FOUND if request.session_id else ErrorCode.INVALID_FETCH_SESSION_EPOCH
        return fr.FetchResponse(error_code=error, session_id=0, responses=[])
    response, total_bytes, has_error = _read_all(context, request)
    if has_error or total_bytes >= request.min_bytes or request.max_wait_ms <= 0:
        return _counted(context, response)
    return _long_poll(context, request)


def _counted(context: RequestContext, response: fr.FetchResponse) -> fr.FetchResponse:
    """Counts bytes out per topic for the response actually sent (long polls read several times)."""
    for topic in response.responses:
        size_bytes = sum(len(p.records) for p in topic.partitions if p.records)
        if size_bytes:
            context.services.metrics.on_fetch(topic.topic, size_bytes)
    return response


async def _long_poll(context: RequestContext, request) -> fr.FetchResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.max_wait_ms / 1000
    event = asyncio.Event()
    partitions = _requested_partitions(context, request)
    for partition in partitions:
        partition.add_watcher(event)
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                break
            event.clear()
            response, total_bytes, has_error = _read_all(context, request)
            if has_error or total_bytes >= request.min_bytes:
                return _counted(context, response)
    finally:
        for partition in partitions:
            partition.remove_watcher(event)
    return _counted(context, _read_all(context, request)[0])


def _requested_partitions(context: RequestContext, request) -> list:
    replica_manager = context.services.replicas
    found = []
    for topic in request.topics:
        for data in topic.partitions:
            partition = replica_manager.get(topic.topic, data.partition)
            if partition is not None:
                found.append(partition)
    return found


def _read_all(context: RequestContext, request) -> tuple[fr.FetchResponse, int, bool]:
    """One pass over every requested partition; returns (response, bytes of records, any partition error)."""
    replica_manager = context.services.replicas
    remaining_bytes = request.max_bytes
    total_bytes = 0
    has_error = False
    read_committed = request.isolation_level == ISOLATION_READ_COMMITTED
    topic_responses = []
    for topic in request.topics:
        partition_responses = []
        for data in topic.partitions:
            result = fr.PartitionData(partition_index=data.partition,
                                      aborted_transactions=[] if read_committed else None)
            partition = replica_manager.get(topic.topic, data.partition)
            try:
                if partition is None:
                    raise KafkaError(replica_manager.missing_error(topic.topic, data.partition))
                partition.check_leader_epoch(data.current_leader_epoch)
                high_watermark = partition.high_watermark
                result.high_watermark = high_watermark
                result.last_stable_offset = high_watermark
                result.log_start_offset = partition.log_start_offset
                limit = min(data.partition_max_bytes, remaining_bytes)
                records = partition.log.read(data.fetch_offset, limit, high_watermark,
                                             min_one_batch=total_bytes == 0) if limit > 0 or total_bytes == 0 else b""
                result.records = records
                total_bytes += len(records)
                remaining_bytes = max(remaining_bytes - len(records), 0)
            except KafkaError as exc:
                has_error = True
                result.error_code = exc.error_code
                result.high_watermark = partition.high_watermark if partition is not None else -1
                result.records = b""
            partition_responses.append(result)
        topic_responses.append(fr.FetchableTopicResponse(topic=topic.topic, partitions=partition_responses))
    response = fr.FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=topic_responses)
    return response, total_bytes, has_error
