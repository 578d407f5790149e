"""Cluster-mode handlers: the APIs whose answer comes from the metadata image or needs the active controller.

Used instead of the single-node handlers when ``controller.quorum.voters`` is set (router.py swaps them in).
Metadata answers from the committed image (every unfenced broker, each partition's leader, replicas, ISR and
leader epoch, topic ids; as controller id a listed broker, which forwards admin requests); CreateTopics, DeleteTopics, CreatePartitions and auto-creation go to the active
controller and return once the change is visible in this broker's own image, so a client that asks this broker
again right after sees its topic.  InitProducerId hands out ids from blocks the controller allocated
(ProducerIdsRecord), so ids are unique across the cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from cluster.broker.cluster_mode import CONTROLLER_CALL_TIMEOUT_MS
from cluster.broker.group_coordinator import OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIGS
from cluster.broker.handlers.context import RequestContext
from cluster.config import ConfigError, validate_topic_configs
from cluster.core.errors import ErrorCode, KafkaError
from cluster.core.names import INTERNAL_TOPICS, validate_topic_name
from cluster.groups.partitioning import partition_for
from cluster.metadata import CreateTopicResult, NewTopic
from cluster.metadata.controller_api import CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest
from cluster.wire.messages import create_partitions_response as cpr
from cluster.wire.messages import create_topics_response as ctr
from cluster.wire.messages import delete_topics_response as dtr
from cluster.wire.messages import find_coordinator_response as fcr
from cluster.wire.messages import init_producer_id_response as ipr
from cluster.wire.messages import metadata_response as mr

log = logging.getLogger("cluster.broker.handlers")

AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
VISIBLE_TIMEOUT_S = 2.0


async def _until(predicate, timeout_s: float = VISIBLE_TIMEOUT_S) -> bool:
    """Waits (polling the image; commits arrive within milliseconds) until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# -- Metadata --------------------------------------------------------------------------------------------------
async def handle_metadata(context: RequestContext, request) -> mr.MetadataResponse:
    broker = context.broker
    cluster = broker.cluster
    if request.topics is None or (context.api_version == 0 and not request.topics):
        wanted = [(name, None) for name in sorted(cluster.image.topics.by_name)]
    else:
        wanted = [(topic.name, getattr(topic, "topic_id", None)) for topic in request.topics]
    allow_auto_create = request.allow_auto_topic_creation if context.api_version >= 4 else True
    if allow_auto_create and broker.config.get("auto.create.topics.enable"):
        await _auto_create(cluster, [name for name, _ in wanted if name is not None])
    live = {node_id for node_id, *_ in broker.live_brokers()}
    topics = [_describe_topic(cluster, name, topic_id, live) for name, topic_id in wanted]
    brokers = cluster.metadata_brokers(context.listener_name)
    return mr.MetadataResponse(
        throttle_time_ms=0,
        brokers=[mr.MetadataResponseBroker(node_id=node_id, host=host, port=port, rack=rack)
                 for node_id, host, port, rack in brokers],
        cluster_id=cluster.cluster_id,
        controller_id=cluster.metadata_controller_id([node_id for node_id, *_ in brokers]),
        topics=topics,
        cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )


async def _auto_create(cluster, names: list[str]) -> None:
    missing = []
    for name in names:
        if cluster.image.topics.get_topic(name) is not None:
            continue
        try:
            validate_topic_name(name)
        except KafkaError:
            continue
        missing.append(name)
    if not missing:
        return
    try:
        await cluster.controller_channel.create_topics(CreateTopicsRequest(tuple(NewTopic(name) for name in missing)))
    except KafkaError:
        return   # answered below as LEADER_NOT_AVAILABLE / UNKNOWN_TOPIC; the client retries
    await _until(lambda: all(cluster.image.topics.get_topic(n) is not None for n in missing))


def _describe_topic(cluster, name: str | None, topic_id: uuid.UUID | None, live: set[int]) -> mr.MetadataResponseTopic:
    image = cluster.image
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


# -- CreateTopics / DeleteTopics / CreatePartitions ----------------------------------------------------------
async def handle_create_topics(context: RequestContext, request) -> ctr.CreateTopicsResponse:
    cluster = context.broker.cluster
    early: dict[str, ctr.CreatableTopicResult] = {}
    forward = []
    for topic in request.topics:
        configs = {config.name: config.value for config in topic.configs}
        try:
            validate_topic_configs(configs)
        except ConfigError as exc:
            early[topic.name] = ctr.CreatableTopicResult(name=topic.name, error_code=ErrorCode.INVALID_CONFIG,
                                                         error_message=str(exc))
            continue
        assignments = {a.partition_index: list(a.broker_ids) for a in topic.assignments} if topic.assignments else None
        forward.append(NewTopic(topic.name, topic.num_partitions, topic.replication_factor, assignments, configs))
    by_name: dict[str, ctr.CreatableTopicResult] = dict(early)
    if forward:
        try:
            replies = await cluster.controller_channel.create_topics(
                CreateTopicsRequest(tuple(forward), request.validate_only),
                timeout_ms=_controller_timeout_ms(request.timeout_ms))
        except KafkaError as exc:
            replies = [CreateTopicResult(t.name, exc.error_code, exc.message) for t in forward]
        created = [r.name for r in replies if r.error_code == 0]
        if not request.validate_only:
            await _until(lambda: all(cluster.image.topics.get_topic(n) is not None for n in created))
        for reply in replies:
            result = ctr.CreatableTopicResult(name=reply.name, error_code=reply.error_code,
                                              error_message=reply.error_message)
            if reply.error_code == 0:
                result.num_partitions = reply.num_partitions
                result.replication_factor = reply.replication_factor
                if reply.topic_id:
                    result.topic_id = reply.topic_id
            by_name.setdefault(reply.name, result)
    results = [by_name[t.name] for t in request.topics if t.name in by_name]
    return ctr.CreateTopicsResponse(throttle_time_ms=0, topics=results)


async def handle_delete_topics(context: RequestContext, request) -> dtr.DeleteTopicsResponse:
    cluster = context.broker.cluster
    names = list(request.topic_names)
    ids = {name: t.topic_id for name in names if (t := cluster.image.topics.get_topic(name)) is not None}
    try:
        replies = {r.name: [r.error_code, r.error_message] for r in await cluster.controller_channel.delete_topics(
            DeleteTopicsRequest(tuple(names)), timeout_ms=_controller_timeout_ms(request.timeout_ms))}
    except KafkaError as exc:
        replies = {name: [int(exc.error_code), exc.message] for name in names}
    deleted = [name for name, (code, _m) in replies.items() if code == 0]
    await _until(lambda: all(cluster.image.topics.get_topic(n) is None for n in deleted))
    results = []
    for name in names:
        code, message = replies.get(name, [int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION), None])
        result = dtr.DeletableTopicResult(name=name, error_code=code, error_message=message)
        if name in ids:
            result.topic_id = ids[name]
        results.append(result)
    return dtr.DeleteTopicsResponse(throttle_time_ms=0, responses=results)


async def handle_create_partitions(context: RequestContext, request) -> cpr.CreatePartitionsResponse:
    cluster = context.broker.cluster
    results = []
    for topic in request.topics:
        result = cpr.CreatePartitionsTopicResult(name=topic.name)
        if request.validate_only:
            current = cluster.image.topics.get_topic(topic.name)
            if current is None:
                result.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif topic.count <= len(current.partitions):
                result.error_code = ErrorCode.INVALID_PARTITIONS
            results.append(result)
            continue
        assignments = tuple(tuple(a.broker_ids) for a in topic.assignments) if topic.assignments is not None else None
        try:
            reply = await cluster.controller_channel.create_partitions(
                CreatePartitionsRequest(topic.name, topic.count, assignments),
                timeout_ms=_controller_timeout_ms(request.timeout_ms))
            code, message = reply.error_code, reply.error_message
        except KafkaError as exc:
            code, message = int(exc.error_code), exc.message
        if code == 0:
            await _until(lambda name=topic.name, count=topic.count: (
                (t := cluster.image.topics.get_topic(name)) is not None and len(t.partitions) >= count))
        result.error_code, result.error_message = code, message
        results.append(result)
    return cpr.CreatePartitionsResponse(throttle_time_ms=0, results=results)


# -- InitProducerId ----------------------------------------------------------------------------------------------
async def handle_init_producer_id(context: RequestContext, request) -> ipr.InitProducerIdResponse:
    if request.transactional_id is not None:
        return ipr.InitProducerIdResponse(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                          producer_id=-1, producer_epoch=-1)
    try:
        producer_id = await context.broker.cluster.next_producer_id()
    except KafkaError as exc:
        code = exc.error_code if exc.error_code != ErrorCode.NOT_CONTROLLER else ErrorCode.COORDINATOR_NOT_AVAILABLE
        return ipr.InitProducerIdResponse(error_code=code, producer_id=-1, producer_epoch=-1)
    if request.producer_id >= 0:
        # KIP-360: an idempotent producer asks to bump its epoch after an error it could not resolve; it then
        # re-sends what was unacknowledged under the new id, which no broker can tell from a new write.
        log.info("InitProducerId from %s (%s): bump of producer id %d epoch %d answered with new producer id %d",
                 context.peer, context.client_id, request.producer_id, request.producer_epoch, producer_id)
    return ipr.InitProducerIdResponse(error_code=0, producer_id=producer_id, producer_epoch=0)


# -- FindCoordinator ---------------------------------------------------------------------------------------------
async def handle_find_coordinator(context: RequestContext, request) -> fcr.FindCoordinatorResponse:
    """The coordinator of a group is the leader of its ``__consumer_offsets`` partition (from the image).

    The offsets topic is created through the controller on first use, as Kafka does; until its partition has
    a leader that has loaded it, the answer is COORDINATOR_NOT_AVAILABLE, which clients retry.
    """
    key_type = request.key_type if context.api_version >= 1 else 0
    if key_type != 0:
        message = "Transactions are not supported yet." if key_type == 1 else f"Unknown key type {key_type}."
        code = ErrorCode.COORDINATOR_NOT_AVAILABLE if key_type == 1 else ErrorCode.INVALID_REQUEST
        return _coordinator_response(code, message)
    broker = context.broker
    cluster = broker.cluster
    topic = cluster.image.topics.get_topic(OFFSETS_TOPIC)
    if topic is None:
        await _create_offsets_topic(broker)
        topic = cluster.image.topics.get_topic(OFFSETS_TOPIC)
        if topic is None:
            return _coordinator_response(ErrorCode.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
    registration = topic.partitions.get(partition_for(request.key, len(topic.partitions)))
    address = (cluster.broker_address(registration.leader, context.listener_name)
               if registration is not None else None)
    if address is None or (registration.leader == cluster.node_id and not _loaded_here(broker, request.key)):
        return _coordinator_response(ErrorCode.COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
    return fcr.FindCoordinatorResponse(throttle_time_ms=0, error_code=0, error_message=None,
                                       node_id=registration.leader, host=address[0], port=address[1])


def _loaded_here(broker, group_id: str) -> bool:
    coordinator = broker.group_coordinator.coordinator
    return coordinator.num_partitions is not None and coordinator.owns_partition(coordinator.partition_of(group_id))


async def _create_offsets_topic(broker) -> None:
    cluster = broker.cluster
    replication = min(broker.config.get("offsets.topic.replication.factor"), max(len(broker.live_brokers()), 1))
    topic = NewTopic(OFFSETS_TOPIC, broker.config.get("offsets.topic.num.partitions"), replication,
                     configs=dict(OFFSETS_TOPIC_CONFIGS))
    try:
        await cluster.controller_channel.create_topics(CreateTopicsRequest((topic,)))
    except KafkaError:
        return
    await _until(lambda: cluster.image.topics.get_topic(OFFSETS_TOPIC) is not None)


def _coordinator_response(code: ErrorCode, message: str) -> fcr.FindCoordinatorResponse:
    return fcr.FindCoordinatorResponse(throttle_time_ms=0, error_code=code, error_message=message,
                                       node_id=-1, host="", port=-1)


def _controller_timeout_ms(request_timeout_ms: int) -> int:
    """An admin request fails (retriably) within its own timeout when no controller answers in time."""
    if request_timeout_ms <= 0:
        return CONTROLLER_CALL_TIMEOUT_MS
    return min(request_timeout_ms, CONTROLLER_CALL_TIMEOUT_MS)
