"""Metadata: brokers, topics and partition leaders from the committed metadata image, with Kafka's auto-create.

The answer lists every unfenced broker at its endpoint for the listener the client came in on, each partition's
leader, replicas, ISR and leader epoch, topic ids, and as controller id a listed broker (which forwards admin
requests; see ``ClusterRuntime.metadata_controller_id``).  A topic a client asks for that does not exist is
created through the active controller with ``num.partitions`` and ``default.replication.factor`` when
``auto.create.topics.enable`` is true and the request allows it (v4+ flag; always allowed before v4), as Kafka
does; ``__consumer_offsets`` is created with the group coordinator's settings.  The answer waits (bounded) until
the new topic shows in this broker's image, so it already carries the topic's leaders.
"""

from __future__ import annotations

import uuid

from cluster.broker.group_coordinator import OFFSETS_TOPIC, offsets_topic_spec
from cluster.broker.handlers.context import BrokerServices, RequestContext
from cluster.broker.handlers.topic_creation import create_topics_and_wait
from cluster.core.errors import ErrorCode, KafkaError
from cluster.core.names import INTERNAL_TOPICS, validate_topic_name
from cluster.wire.messages import metadata_response as mr

AUTHORIZED_OPERATIONS_OMITTED = -(2**31)


async def handle_metadata(context: RequestContext, request) -> mr.MetadataResponse:
    services = context.services
    metadata = services.metadata
    if request.topics is None or (context.api_version == 0 and not request.topics):
        wanted = [(name, None) for name in sorted(metadata.image.topics.by_name)]
    else:
        wanted = [(topic.name, getattr(topic, "topic_id", None)) for topic in request.topics]
    allow_auto_create = request.allow_auto_topic_creation if context.api_version >= 4 else True
    if allow_auto_create and services.config.get("auto.create.topics.enable"):
        await _auto_create(services, [name for name, _ in wanted if name is not None])
    live = {node_id for node_id, *_ in metadata.live_brokers()}
    topics = [_describe_topic(metadata.image, name, topic_id, live) for name, topic_id in wanted]
    brokers = metadata.metadata_brokers(context.listener_name)
    return mr.MetadataResponse(
        throttle_time_ms=0,
        brokers=[mr.MetadataResponseBroker(node_id=node_id, host=host, port=port, rack=rack)
                 for node_id, host, port, rack in brokers],
        cluster_id=metadata.cluster_id,
        controller_id=metadata.metadata_controller_id([node_id for node_id, *_ in brokers]),
        topics=topics,
        cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )


async def _auto_create(services: BrokerServices, names: list[str]) -> None:
    image = services.metadata.image
    missing = []
    for name in names:
        if image.topics.get_topic(name) is not None:
            continue
        try:
            validate_topic_name(name)
        except KafkaError:
            continue
        missing.append(name)
    if not missing:
        return
    live_count = len(services.metadata.live_brokers())
    # Not created in time: answered below as LEADER_NOT_AVAILABLE / UNKNOWN_TOPIC; the client retries.
    await create_topics_and_wait(services, [
        offsets_topic_spec(services.config, live_count) if name == OFFSETS_TOPIC
        else {"name": name, "num_partitions": -1, "replication_factor": -1} for name in missing])


def _describe_topic(image, name: str | None, topic_id: uuid.UUID | None, live: set[int]) -> mr.MetadataResponseTopic:
    if name is None:
        topic = image.topics.by_id.get(topic_id) if topic_id is not None else None
        if topic is None:
            return mr.MetadataResponseTopic(error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None,
                                            topic_id=topic_id or uuid.UUID(int=0))
    else:
        topic = image.topics.get_topic(name)
        if topic is None:
            try:
                validate_topic_name(name)
            except KafkaError as exc:
                return mr.MetadataResponseTopic(error_code=exc.error_code, name=name)
            return mr.MetadataResponseTopic(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name)
    partitions = []
    for index in sorted(topic.partitions):
        registration = topic.partitions[index]
        partitions.append(mr.MetadataResponsePartition(
            error_code=0 if registration.has_leader() else ErrorCode.LEADER_NOT_AVAILABLE,
            partition_index=index,
            leader_id=registration.leader,
            leader_epoch=registration.leader_epoch,
            replica_nodes=list(registration.replicas),
            isr_nodes=list(registration.isr),
            offline_replicas=[r for r in registration.replicas if r not in live],
        ))
    return mr.MetadataResponseTopic(
        error_code=0, name=topic.name, topic_id=topic.topic_id, is_internal=topic.name in INTERNAL_TOPICS,
        partitions=partitions, topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )
