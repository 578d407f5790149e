"""Topic administration: CreateTopics, DeleteTopics, CreatePartitions and DescribeConfigs.

Errors are Kafka's, per topic, with a message saying what was wrong: TOPIC_ALREADY_EXISTS,
INVALID_PARTITIONS (count <= 0 other than -1 = broker default), INVALID_REPLICATION_FACTOR (more replicas than
live brokers), INVALID_REPLICA_ASSIGNMENT, INVALID_TOPIC_EXCEPTION, INVALID_CONFIG (unknown key or bad value),
UNKNOWN_TOPIC_OR_PARTITION.  ``validate_only`` checks everything and changes nothing.
"""

from __future__ import annotations

import logging

from cluster.broker.handlers.context import RequestContext
from cluster.config import (
    BROKER_CONFIGS,
    TOPIC_CONFIGS,
    ConfigError,
    format_value,
    validate_topic_configs,
)
from cluster.core.errors import ErrorCode, KafkaError
from cluster.core.names import INTERNAL_TOPICS, validate_topic_name
from cluster.wire.messages import create_partitions_response as cpr
from cluster.wire.messages import create_topics_response as ctr
from cluster.wire.messages import delete_topics_response as dtr
from cluster.wire.messages import describe_configs_response as dcr

log = logging.getLogger("cluster.broker.admin")

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
MAX_PARTITIONS_PER_TOPIC = 10_000


def handle_create_topics(context: RequestContext, request) -> ctr.CreateTopicsResponse:
    results = []
    seen: set[str] = set()
    for topic in request.topics:
        result = ctr.CreatableTopicResult(name=topic.name)
        try:
            if topic.name in seen:
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"topic {topic.name} appears twice in the request")
            seen.add(topic.name)
            num_partitions, replication_factor, configs = _validate_new_topic(context, topic)
            if not request.validate_only:
                context.broker.replica_manager.create_topic(topic.name, num_partitions, replication_factor,
                                                            configs)
            result.num_partitions, result.replication_factor = num_partitions, replication_factor
        except KafkaError as exc:
            result.error_code, result.error_message = exc.error_code, exc.message or None
            log.info("create topic %r rejected: %s", topic.name, exc)
        results.append(result)
    return ctr.CreateTopicsResponse(throttle_time_ms=0, topics=results)


def _validate_new_topic(context: RequestContext, topic) -> tuple[int, int, dict[str, str]]:
    broker = context.broker
    validate_topic_name(topic.name)
    if topic.name in broker.replica_manager.store.topics:
        raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{topic.name}' already exists.")
    if topic.assignments:
        num_partitions, replication_factor = _validate_assignments(context, topic)
    else:
        num_partitions = topic.num_partitions
        replication_factor = topic.replication_factor
        if num_partitions == -1:
            num_partitions = broker.config.get("num.partitions")
        if replication_factor == -1:
            replication_factor = broker.config.get("default.replication.factor")
        _check_counts(context, num_partitions, replication_factor)
    configs = {config.name: config.value for config in topic.configs}
    try:
        validate_topic_configs(configs)
    except ConfigError as exc:
        raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from None
    return num_partitions, replication_factor, configs


def _check_counts(context: RequestContext, num_partitions: int, replication_factor: int) -> None:
    if num_partitions <= 0 or num_partitions > MAX_PARTITIONS_PER_TOPIC:
        raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                         f"Number of partitions must be in [1, {MAX_PARTITIONS_PER_TOPIC}], got {num_partitions}.")
    live = len(context.broker.live_brokers())
    if replication_factor <= 0 or replication_factor > live:
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                         f"Replication factor: {replication_factor} larger than available brokers: {live}."
                         if replication_factor > 0 else "Replication factor must be larger than 0.")


def _validate_assignments(context: RequestContext, topic) -> tuple[int, int]:
    if topic.num_partitions != -1 or topic.replication_factor != -1:
        raise KafkaError(ErrorCode.INVALID_REQUEST,
                         "Both numPartitions or replicationFactor and replicasAssignments were set.")
    live_ids = {node_id for node_id, *_ in context.broker.live_brokers()}
    indexes = sorted(assignment.partition_index for assignment in topic.assignments)
    if indexes != list(range(len(indexes))):
        raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "partitions must be numbered 0..n-1")
    sizes = {len(assignment.broker_ids) for assignment in topic.assignments}
    for assignment in topic.assignments:
        if len(set(assignment.broker_ids)) != len(assignment.broker_ids) or not set(assignment.broker_ids) <= live_ids:
            raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                             f"partition {assignment.partition_index}: replicas {assignment.broker_ids} "
                             f"must be distinct live brokers {sorted(live_ids)}")
    if len(sizes) != 1:
        raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "all partitions need the same replica count")
    return len(indexes), sizes.pop()


def handle_delete_topics(context: RequestContext, request) -> dtr.DeleteTopicsResponse:
    broker = context.broker
    results = []
    for name in request.topic_names:
        result = dtr.DeletableTopicResult(name=name)
        try:
            if not broker.config.get("delete.topic.enable"):
                raise KafkaError(ErrorCode.TOPIC_DELETION_DISABLED, "delete.topic.enable is false")
            record = broker.replica_manager.store.topics.get(name)
            if record is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist.")
            if name in INTERNAL_TOPICS:
                # Deleting it would silently drop every group's committed offsets.
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"Internal topic {name} cannot be deleted.")
            result.topic_id = record.topic_id
            broker.replica_manager.delete_topic(name)
        except KafkaError as exc:
            result.error_code, result.error_message = exc.error_code, exc.message or None
        results.append(result)
    return dtr.DeleteTopicsResponse(throttle_time_ms=0, responses=results)


def handle_create_partitions(context: RequestContext, request) -> cpr.CreatePartitionsResponse:
    broker = context.broker
    results = []
    for topic in request.topics:
        result = cpr.CreatePartitionsTopicResult(name=topic.name)
        try:
            record = broker.replica_manager.store.topics.get(topic.name)
            if record is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{topic.name}' does not exist.")
            if topic.name in INTERNAL_TOPICS:
                # Groups map to offsets partitions by hash % partition count: a change would orphan them.
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"The number of partitions of internal topic {topic.name} cannot change.")
            if topic.count <= record.num_partitions:
                raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                                 f"Topic currently has {record.num_partitions} partitions, which is higher than "
                                 f"or equal to the requested {topic.count}.")
            if topic.count > MAX_PARTITIONS_PER_TOPIC:
                raise KafkaError(ErrorCode.INVALID_PARTITIONS, f"at most {MAX_PARTITIONS_PER_TOPIC} partitions")
            if topic.assignments is not None and len(topic.assignments) != topic.count - record.num_partitions:
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                 "one assignment is needed per new partition")
            if not request.validate_only:
                broker.replica_manager.add_partitions(topic.name, topic.count)
        except KafkaError as exc:
            result.error_code, result.error_message = exc.error_code, exc.message or None
        results.append(result)
    return cpr.CreatePartitionsResponse(throttle_time_ms=0, results=results)


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
    broker = context.broker
    if resource_type == RESOURCE_TOPIC:
        record = broker.replica_manager.store.topics.get(resource_name)
        if record is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{resource_name}' does not exist.")
        for name, (value, source) in sorted(broker.replica_manager.topic_configs(record).items()):
            yield name, value, source, TOPIC_CONFIGS[name].definition.config_type, False
        return
    if resource_type == RESOURCE_BROKER:
        if resource_name not in ("", str(broker.config.node_id)):
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"this broker is node {broker.config.node_id}")
        for name, value in sorted(broker.config.items()):
            definition = BROKER_CONFIGS.get(name)
            source = 4 if name in broker.config.explicit_keys else 5
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
