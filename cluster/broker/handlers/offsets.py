"""ListOffsets and OffsetForLeaderEpoch: where a consumer may start, and whether its log was truncated.

ListOffsets targets, as in Kafka: -2 earliest (log start offset), -1 latest (the high watermark, the end
that consumers can see; the last stable offset for read_committed, equal here without transactions),
-3 the record with the largest timestamp (v7), otherwise the first record whose timestamp is >= the target
(record level, not batch level) among the visible records, or offset -1 when there is none.
"""

from __future__ import annotations

from cluster.broker.handlers.context import RequestContext
from cluster.core.errors import ErrorCode, KafkaError
from cluster.wire.messages import list_offsets_response as lor
from cluster.wire.messages import offset_for_leader_epoch_response as ofler

EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
MAX_TIMESTAMP = -3


def handle_list_offsets(context: RequestContext, request) -> lor.ListOffsetsResponse:
    topics = []
    for topic in request.topics:
        partitions = []
        for data in topic.partitions:
            result = lor.ListOffsetsPartitionResponse(partition_index=data.partition_index)
            partition = context.services.replicas.get(topic.name, data.partition_index)
            try:
                if partition is None:
                    raise KafkaError(context.services.replicas.missing_error(topic.name, data.partition_index))
                partition.check_leader_epoch(data.current_leader_epoch)
                result.timestamp, result.offset, result.leader_epoch = _lookup(partition, data.timestamp)
            except KafkaError as exc:
                result.error_code = exc.error_code
            partitions.append(result)
        topics.append(lor.ListOffsetsTopicResponse(name=topic.name, partitions=partitions))
    return lor.ListOffsetsResponse(throttle_time_ms=0, topics=topics)


def _lookup(partition, target: int) -> tuple[int, int, int]:
    """(timestamp, offset, leader_epoch) for one ListOffsets target."""
    high_watermark = partition.high_watermark
    if target == EARLIEST_TIMESTAMP:
        return -1, partition.log_start_offset, _epoch_at(partition, partition.log_start_offset)
    state = partition.leader_state
    if state is not None and state.high_watermark_behind_epoch_start:
        # A new leader whose HW has not reached its epoch's start could answer an offset that later goes
        # backwards (replication.md section 2.8): the client retries until the followers caught up.
        raise KafkaError(ErrorCode.OFFSET_NOT_AVAILABLE, "high watermark behind the leader epoch start")
    if target == LATEST_TIMESTAMP:
        return -1, high_watermark, partition.leader_epoch
    if target == MAX_TIMESTAMP:
        found = partition.log.max_timestamp_and_offset()
        if found is None or found[1] >= high_watermark:
            return -1, -1, -1
        return found
    if target < 0:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"unknown ListOffsets timestamp {target}")
    found = partition.log.offset_for_timestamp(target)
    if found is None or found[0] >= high_watermark:
        return -1, -1, -1
    offset, timestamp, leader_epoch = found
    return timestamp, offset, leader_epoch


def _epoch_at(partition, offset: int) -> int:
    latest = partition.log.latest_epoch
    return latest if latest is not None else partition.leader_epoch


def handle_offset_for_leader_epoch(context: RequestContext, request) -> ofler.OffsetForLeaderEpochResponse:
    topics = []
    for topic in request.topics:
        partitions = []
        for data in topic.partitions:
            result = ofler.EpochEndOffset(partition=data.partition)
            partition = context.services.replicas.get(topic.topic, data.partition)
            try:
                if partition is None:
                    raise KafkaError(context.services.replicas.missing_error(topic.name, data.partition_index))
                partition.check_leader_epoch(data.current_leader_epoch)
                result.leader_epoch, result.end_offset = partition.log.end_offset_for_epoch(data.leader_epoch)
            except KafkaError as exc:
                result.error_code = exc.error_code
            partitions.append(result)
        topics.append(ofler.OffsetForLeaderTopicResult(topic=topic.topic, partitions=partitions))
    return ofler.OffsetForLeaderEpochResponse(throttle_time_ms=0, topics=topics)
