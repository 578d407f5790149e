"""Metadata: brokers, topics and partition leaders, with Kafka's auto-create semantics.

A topic a client asks for that does not exist is created with ``num.partitions`` and
``default.replication.factor`` when ``auto.create.topics.enable`` is true and the request allows it (v4+ flag;
always allowed before v4), as Kafka does.  A single node creates it synchronously, so the reply already
carries its leader instead of LEADER_NOT_AVAILABLE.
"""

from __future__ import annotations

import uuid

from cluster.broker.handlers.context import RequestContext
from cluster.core.errors import ErrorCode, KafkaError
from cluster.core.names import INTERNAL_TOPICS, validate_topic_name
from cluster.wire.messages import metadata_response as mr

AUTHORIZED_OPERATIONS_OMITTED = -(2**31)


def handle_metadata(context: RequestContext, request) -> mr.MetadataResponse:
    broker = context.broker
    store = broker.replica_manager.store
    if request.topics is None or (context.api_version == 0 and not request.topics):
        wanted = [(name, None) for name in sorted(store.topics)]
    else:
        wanted = [(topic.name, getattr(topic, "topic_id", None)) for topic in request.topics]
    allow_auto_create = request.allow_auto_topic_creation if context.api_version >= 4 else True
    topics = [_describe_topic(context, name, topic_id, allow_auto_create) for name, topic_id in wanted]
    return mr.MetadataResponse(
        throttle_time_ms=0,
        brokers=[mr.MetadataResponseBroker(node_id=node_id, host=host, port=port, rack=rack)
                 for node_id, host, port, rack in broker.live_brokers(context.listener_name)],
        cluster_id=store.cluster_id,
        controller_id=broker.config.node_id,
        topics=topics,
        cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )


def _describe_topic(context: RequestContext, name: str | None, topic_id: uuid.UUID | None,
                    allow_auto_create: bool) -> mr.MetadataResponseTopic:
    broker = context.broker
    store = broker.replica_manager.store
    if name is None:
        record = store.topic_by_id(topic_id) if topic_id is not None else None
        if record is None:
            return mr.MetadataResponseTopic(error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None,
                                            topic_id=topic_id or uuid.UUID(int=0))
        name = record.name
    record = store.topics.get(name)
    if record is None:
        try:
            validate_topic_name(name)
        except KafkaError as exc:
            return mr.MetadataResponseTopic(error_code=exc.error_code, name=name)
        if not (allow_auto_create and broker.config.get("auto.create.topics.enable")):
            return mr.MetadataResponseTopic(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name)
        record = broker.auto_create_topic(name)
    partitions = []
    for partition_index in range(record.num_partitions):
        partition = broker.replica_manager.get(record.name, partition_index)
        leader_epoch = partition.leader_epoch if partition is not None else -1
        partitions.append(mr.MetadataResponsePartition(
            error_code=0 if partition is not None else ErrorCode.LEADER_NOT_AVAILABLE,
            partition_index=partition_index,
            leader_id=broker.config.node_id if partition is not None else -1,
            leader_epoch=leader_epoch,
            replica_nodes=[broker.config.node_id],
            isr_nodes=[broker.config.node_id],
            offline_replicas=[],
        ))
    return mr.MetadataResponseTopic(
        error_code=0, name=record.name, topic_id=record.topic_id, is_internal=record.name in INTERNAL_TOPICS,
        partitions=partitions, topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )
