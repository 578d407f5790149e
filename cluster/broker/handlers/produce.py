"""Produce: validate each partition's batch, append it, and answer per ``acks``.

* acks=0: append and send no response at all (Kafka closes the connection on errors it cannot report; we log
  and carry on, since nothing stored is affected by a rejected batch).
* acks=1: answer once the leader appended (the batch is not yet durable, nor visible to consumers).
* acks=-1 (all): NOT_ENOUGH_REPLICAS before appending when the ISR is below min.insync.replicas; else answer
  once the high watermark covers the batch, i.e. once every ISR member fsynced it (the delayed-produce
  purgatory: ``Partition.wait_for_high_watermark``), NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below
  min.insync.replicas meanwhile, or REQUEST_TIMED_OUT after the request's ``timeout_ms``.

Every partition is handled independently: one bad batch fails only its own partition.  All appends of a
request happen synchronously before the first wait, so requests on one connection append in arrival order.
"""

from __future__ import annotations

import asyncio
import logging

from cluster.broker.handlers.api_versions import PRODUCE_MIN_ACCEPTED_VERSION
from cluster.broker.handlers.context import RequestContext
from cluster.core.errors import ErrorCode, KafkaError
from cluster.wire.messages import produce_response as pr

log = logging.getLogger("cluster.broker.produce")


def handle_produce(context: RequestContext, request):
    """Returns the response, None for acks=0, or a coroutine when acks=-1 must wait."""
    services = context.services
    if request.acks not in (0, 1, -1):
        return _error_response(request, ErrorCode.INVALID_REQUIRED_ACKS)
    if context.api_version < PRODUCE_MIN_ACCEPTED_VERSION:
        return _error_response(request, ErrorCode.UNSUPPORTED_VERSION)
    now_ms = services.now_ms()
    results: list[tuple[str, list[pr.PartitionProduceResponse]]] = []
    waits: list[tuple[pr.PartitionProduceResponse, object, int]] = []
    for topic in request.topic_data:
        partition_responses = []
        for data in topic.partition_data:
            response = pr.PartitionProduceResponse(index=data.index)
            partition = services.replicas.get(topic.name, data.index)
            try:
                if partition is None:
                    raise KafkaError(services.replicas.missing_error(topic.name, data.index),
                                     f"{topic.name}-{data.index}")
                if data.records is None or len(data.records) == 0:
                    raise KafkaError(ErrorCode.INVALID_RECORD, "no record batch")
                base_offset, last_offset, log_append_time_ms = partition.append_records(
                    data.records, now_ms, context.api_version, request.acks)
                response.base_offset = base_offset
                response.log_append_time_ms = log_append_time_ms
                response.log_start_offset = partition.log_start_offset
                services.metrics.on_produce(topic.name, data.records)
                if request.acks == -1:
                    waits.append((response, partition, last_offset + 1))
            except KafkaError as exc:
                _fail(response, exc, context, topic.name, data.index)
            partition_responses.append(response)
        results.append((topic.name, partition_responses))
    if request.acks == 0:
        return None
    if not waits:
        return _response(results)
    return _await_high_watermark(results, waits, request.timeout_ms)


async def _await_high_watermark(results, waits, timeout_ms: int) -> pr.ProduceResponse:
    futures = [partition.wait_for_high_watermark(offset) for _response, partition, offset in waits]
    _done, pending = await asyncio.wait(futures, timeout=max(timeout_ms, 0) / 1000)
    for (response, _partition, _offset), future in zip(waits, futures, strict=True):
        if future in pending:
            future.cancel()
            response.error_code = ErrorCode.REQUEST_TIMED_OUT
            response.base_offset = -1
        elif future.exception() is not None:
            exc = future.exception()
            response.error_code = exc.error_code if isinstance(exc, KafkaError) else ErrorCode.UNKNOWN_SERVER_ERROR
            response.base_offset = -1
    return _response(results)


def _fail(response, exc: KafkaError, context: RequestContext, topic: str, partition_index: int) -> None:
    response.error_code = exc.error_code
    response.base_offset = -1
    response.error_message = exc.message or None
    level = logging.INFO if exc.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION else logging.WARNING
    log.log(level, "produce to %s-%d from %s (%s) rejected: %s", topic, partition_index, context.peer,
            context.client_id, exc)


def _response(results) -> pr.ProduceResponse:
    return pr.ProduceResponse(
        responses=[pr.TopicProduceResponse(name=name, partition_responses=partitions)
                   for name, partitions in results],
        throttle_time_ms=0,
    )


def _error_response(request, error_code: ErrorCode):
    if request.acks == 0:
        return None
    return pr.ProduceResponse(responses=[
        pr.TopicProduceResponse(name=topic.name, partition_responses=[
            pr.PartitionProduceResponse(index=data.index, error_code=error_code, base_offset=-1)
            for data in topic.partition_data])
        for topic in request.topic_data
    ])
