"""Topic administration: CreateTopics, DeleteTopics, CreatePartitions and DescribeConfigs.

CreateTopics, DeleteTopics and CreatePartitions go to the active controller (cluster/metadata/controller.py
decides) and return once the change is visible in this broker's own image, so a client that asks this broker
again right after sees it.  Errors are Kafka's, per topic, with a message saying what was wrong:
TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS (count <= 0 other than -1 = broker default),
INVALID_REPLICATION_FACTOR (more replicas than live brokers), INVALID_REPLICA_ASSIGNMENT,
INVALID_TOPIC_EXCEPTION, INVALID_CONFIG (unknown key or bad value; checked here before the controller is
asked), UNKNOWN_TOPIC_OR_PARTITION.  ``validate_only`` checks everything and changes nothing.
"""

from __future__ import annotations

import logging
import uuid

from cluster.broker.cluster_mode import CONTROLLER_CALL_TIMEOUT_MS
from cluster.broker.handlers.context import RequestContext
from cluster.broker.handlers.topic_creation import VISIBLE_TIMEOUT_S
from cluster.config import (
    BROKER_CONFIGS,
    TOPIC_CONFIGS,
    ConfigError,
    format_value,
    validate_topic_configs,
)
from cluster.core.errors import ErrorCode, KafkaError
from cluster.wire.messages import create_partitions_response as cpr
from cluster.wire.messages import create_topics_response as ctr
from cluster.wire.messages import delete_topics_response as dtr
from cluster.wire.messages import describe_configs_response as dcr

log = logging.getLogger("cluster.broker.admin")

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4


async def handle_create_topics(context: RequestContext, request) -> ctr.CreateTopicsResponse:
    controller, metadata = context.services.controller, context.services.metadata
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
        forward.append({"name": topic.name, "num_partitions": topic.num_partitions,
                        "replication_factor": topic.replication_factor, "assignments": assignments,
                        "configs": configs})
    by_name: dict[str, ctr.CreatableTopicResult] = dict(early)
    if forward:
        try:
            replies = await controller.call_controller("create_topics", {"topics": forward,
                                                                         "validate_only": request.validate_only},
                                                       timeout_ms=controller_timeout_ms(request.timeout_ms))
        except KafkaError as exc:
            replies = [{"name": t["name"], "error_code": int(exc.error_code), "error_message": exc.message}
                       for t in forward]
        created = [r["name"] for r in replies if r["error_code"] == 0]
        if not request.validate_only:
            await metadata.wait_for_metadata(
                lambda: all(metadata.image.topics.get_topic(n) is not None for n in created), VISIBLE_TIMEOUT_S)
        for reply in replies:
            result = ctr.CreatableTopicResult(name=reply["name"], error_code=reply["error_code"],
                                              error_message=reply.get("error_message"))
            if reply["error_code"] == 0:
                result.num_partitions = reply["num_partitions"]
                result.replication_factor = reply["replication_factor"]
                if reply.get("topic_id"):
                    result.topic_id = uuid.UUID(reply["topic_id"])
            else:
                log.info("create topic %r rejected: %s", reply["name"], reply.get("error_message"))
            by_name.setdefault(reply["name"], result)
    results = [by_name[t.name] for t in request.topics if t.name in by_name]
    return ctr.CreateTopicsResponse(throttle_time_ms=0, topics=results)


async def handle_delete_topics(context: RequestContext, request) -> dtr.DeleteTopicsResponse:
    controller, metadata = context.services.controller, context.services.metadata
    names = list(request.topic_names)
    ids = {name: t.topic_id for name in names if (t := metadata.image.topics.get_topic(name)) is not None}
    try:
        replies = await controller.call_controller("delete_topics", {"names": names},
                                                   timeout_ms=controller_timeout_ms(request.timeout_ms))
    except KafkaError as exc:
        replies = {name: [int(exc.error_code), exc.message] for name in names}
    deleted = [name for name, (code, _m) in replies.items() if code == 0]
    await metadata.wait_for_metadata(lambda: all(metadata.image.topics.get_topic(n) is None for n in deleted),
                                     VISIBLE_TIMEOUT_S)
    results = []
    for name in names:
        code, message = replies.get(name, [int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION), None])
        result = dtr.DeletableTopicResult(name=name, error_code=code, error_message=message)
        if name in ids:
            result.topic_id = ids[name]
        results.append(result)
    return dtr.DeleteTopicsResponse(throttle_time_ms=0, responses=results)


async def handle_create_partitions(context: RequestContext, request) -> cpr.CreatePartitionsResponse:
    controller, metadata = context.services.controller, context.services.metadata
    results = []
    for topic in request.topics:
        result = cpr.CreatePartitionsTopicResult(name=topic.name)
        if request.validate_only:
            current = metadata.image.topics.get_topic(topic.name)
            if current is None:
                result.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif topic.count <= len(current.partitions):
                result.error_code = ErrorCode.INVALID_PARTITIONS
            results.append(result)
            continue
        assignments = [list(a.broker_ids) for a in topic.assignments] if topic.assignments is not None else None
        try:
            code, message = await controller.call_controller(
                "create_partitions", {"name": topic.name, "count": topic.count, "assignments": assignments},
                timeout_ms=controller_timeout_ms(request.timeout_ms))
        except KafkaError as exc:
            code, message = int(exc.error_code), exc.message
        if code == 0:
            await metadata.wait_for_metadata(lambda name=topic.name, count=topic.count: (
                (t := metadata.image.topics.get_topic(name)) is not None and len(t.partitions) >= count),
                VISIBLE_TIMEOUT_S)
        result.error_code, result.error_message = code, message
        results.append(result)
    return cpr.CreatePartitionsResponse(throttle_time_ms=0, results=results)


def controller_timeout_ms(request_timeout_ms: int) -> int:
    """An admin request fails (retriably) within its own timeout when no controller answers in time."""
    if request_timeout_ms <= 0:
        return CONTROLLER_CALL_TIMEOUT_MS
    return min(request_timeout_ms, CONTROLLER_CALL_TIMEOUT_MS)


def handle_describe_configs(context: RequestContext, request) -> dcr.DescribeConfigsResponse:
    results = []
    for resource in request.resources:
        result = dcr.DescribeConfigsResult(resource_type=resource.resource_type,
                                           resource_name=resource.resource_name)
        try:
            entries = _config_entries(context, resource.resource_type, resource.resource_name)
            wanted = resource.configuration_keys
            result.configs = [
                _config_result(context, request, name, value, source, config_type, read_only)
                for name, value, source, config_type, read_only in entries
                if wanted is None or name in wanted
            ]
        except KafkaError as exc:
            result.error_code, result.error_message = exc.error_code, exc.message or None
        results.append(result)
    return dcr.DescribeConfigsResponse(throttle_time_ms=0, results=results)


def _config_entries(context: RequestContext, resource_type: int, resource_name: str):
    replicas, config = context.services.replicas, context.services.config
    if resource_type == RESOURCE_TOPIC:
        record = replicas.store.topics.get(resource_name)
        if record is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{resource_name}' does not exist.")
        for name, (value, source) in sorted(replicas.topic_configs(record).items()):
            yield name, value, source, TOPIC_CONFIGS[name].definition.config_type, False
        return
    if resource_type == RESOURCE_BROKER:
        if resource_name not in ("", str(config.node_id)):
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"this broker is node {config.node_id}")
        for name, value in sorted(config.items()):
            definition = BROKER_CONFIGS.get(name)
            source = 4 if name in config.explicit_keys else 5
            config_type = definition.config_type if definition else 2
            yield name, value, source, config_type, definition.read_only if definition else True
        return
    raise KafkaError(ErrorCode.INVALID_REQUEST, f"unsupported resource type {resource_type}")


def _config_result(context: RequestContext, request, name, value, source, config_type, read_only):
    rendered = format_value(value)
    synonyms = []
    if request.include_synonyms:
        synonyms = [dcr.DescribeConfigsSynonym(name=name, value=rendered, source=source)]
    return dcr.DescribeConfigsResourceResult(
        name=name, value=rendered, read_only=read_only, is_default=source == 5, config_source=source,
        is_sensitive=False, synonyms=synonyms, config_type=config_type,
        documentation=None,
    )
