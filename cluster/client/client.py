"""A small asyncio Kafka client on our own codecs: bootstrap, metadata, routing, admin, produce, fetch.

Our CLI, tools and tests need to talk to a cluster (ours, or a real Kafka for comparison) without
depending on a third-party client whose behaviour we would then be testing too.  This client does
the minimum a correct Kafka client must:

* bootstrap from a list of ``host:port`` addresses, then learn brokers and partition leaders from
  Metadata and send each partition's Produce/Fetch/ListOffsets to its leader's node id (one
  connection per node), refreshing metadata after NOT_LEADER_OR_FOLLOWER and friends;
* send admin requests (CreateTopics, DeleteTopics, CreatePartitions) to the controller named in
  Metadata (a KRaft broker forwards them), DescribeConfigs to any broker;
* build RecordBatch v2 with ``cluster.wire.records.build_batch``; decode fetched batches, check their
  CRC-32C, drop control batches, aborted transactions (read_committed) and the records below the
  requested offset (Fetch returns whole batches).

It is not a full producer: no idempotence, no accumulator, retries only for errors that guarantee the
batch was not appended.  Errors: KafkaResponseError (ErrorCode name + broker message) and
BrokerConnectionError (address), see ``cluster.client.errors``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from cluster.client.connection import ApiKey, BrokerConnection
from cluster.client.errors import BrokerConnectionError, KafkaResponseError, error_from_code
from cluster.client.groups import GroupsMixin
from cluster.client.reassignments import ReassignmentsMixin
from cluster.client.types import (
    NO_LEADER,
    BrokerInfo,
    ClusterMetadata,
    ConfigEntry,
    ConsumerRecord,
    CreatedTopic,
    FetchedPartition,
    NewTopic,
    OffsetAndTimestamp,
    PartitionMetadata,
    ProduceResult,
    ProducerRecord,
    ResourceType,
    TopicMetadata,
    TopicPartition,
    parse_bootstrap_servers,
)
from cluster.core.errors import CorruptRecordError, ErrorCode
from cluster.wire.messages import create_partitions_request as cpq
from cluster.wire.messages import create_topics_request as ctq
from cluster.wire.messages import delete_topics_request as dtq
from cluster.wire.messages import describe_configs_request as dcq
from cluster.wire.messages import fetch_request as fq
from cluster.wire.messages import list_offsets_request as loq
from cluster.wire.messages import metadata_request as mq
from cluster.wire.messages import produce_request as pq
from cluster.wire.primitives import ZERO_UUID
from cluster.wire.records import (
    ControlRecordType,
    batch_crc_is_valid,
    build_batch,
    control_record_type,
    decode_records,
    iter_batch_headers,
)

__all__ = [
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "MAX_TIMESTAMP",
    "KafkaClient",
    "decode_partition_records",
]

log = logging.getLogger("cluster.client")

# ListOffsets special timestamps (ListOffsetsRequest.EARLIEST_TIMESTAMP etc.).
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3

READ_UNCOMMITTED = 0
READ_COMMITTED = 1
CONSUMER_REPLICA_ID = -1

# Produce errors that mean "not appended, try the (new) leader": safe to retry without idempotence.
_PRODUCE_RETRIABLE = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_ENOUGH_REPLICAS,
    }
)
# Partition errors after which the leader is probably elsewhere: refresh metadata.
_STALE_METADATA = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.KAFKA_STORAGE_ERROR,
    }
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _resource(topic: str, partition: int | None = None) -> str:
    return f"topic '{topic}'" if partition is None else f"partition {topic}-{partition}"


class KafkaClient(GroupsMixin, ReassignmentsMixin):
    """``async with KafkaClient("127.0.0.1:9092") as client: ...``

    Group administration (find_coordinator, list_groups, describe_group(s), offset_fetch, offset_commit,
    delete_groups) comes from ``cluster.client.groups.GroupsMixin``.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        *,
        client_id: str = "kraftpy",
        connect_timeout_ms: int = 10_000,
        request_timeout_ms: int = 30_000,
        retries: int = 5,
        retry_backoff_ms: int = 100,
    ) -> None:
        self.bootstrap = parse_bootstrap_servers(bootstrap_servers)
        self.client_id = client_id
        self.connect_timeout_ms = connect_timeout_ms
        self.request_timeout_ms = request_timeout_ms
        self.retries = retries
        self.retry_backoff_ms = retry_backoff_ms
        self.cluster = ClusterMetadata(cluster_id=None, controller_id=-1, brokers={}, topics={})
        self._any: BrokerConnection | None = None  # the bootstrap connection, for unrouted requests
        self._nodes: dict[int, BrokerConnection] = {}
        self._connecting: dict[int, asyncio.Task] = {}

    async def __aenter__(self) -> KafkaClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def start(self) -> None:
        """Connects to the first reachable bootstrap server and learns the brokers."""
        await self._any_connection()
        await self.metadata([])

    async def close(self) -> None:
        connections = list(self._nodes.values())
        if self._any is not None:
            connections.append(self._any)
        self._nodes.clear()
        self._any = None
        for connection in connections:
            await connection.close()

    # -- connections -------------------------------------------------------------------------------

    async def _open(self, host: str, port: int) -> BrokerConnection:
        return await BrokerConnection.open(
            host,
            port,
            client_id=self.client_id,
            connect_timeout_ms=self.connect_timeout_ms,
            request_timeout_ms=self.request_timeout_ms,
        )

    async def _any_connection(self) -> BrokerConnection:
        if self._any is not None and not self._any.closed:
            return self._any
        for connection in self._nodes.values():
            if not connection.closed:
                return connection
        candidates = list(self.bootstrap) + [(b.host, b.port) for b in self.cluster.brokers.values()]
        failures = []
        for host, port in dict.fromkeys(candidates):
            try:
                self._any = await self._open(host, port)
                return self._any
            except BrokerConnectionError as exc:
                failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        raise BrokerConnectionError(
            ",".join(exc.address for exc in failures),
            "no bootstrap server reachable (" + "; ".join(str(exc) for exc in failures) + ")",
        )

    async def _node_connection(self, node_id: int) -> BrokerConnection:
        connection = self._nodes.get(node_id)
        if connection is not None and not connection.closed:
            return connection
        broker = self.cluster.brokers.get(node_id)
        if broker is None:
            await self.metadata([])
            broker = self.cluster.brokers.get(node_id)
            if broker is None:
                raise KafkaResponseError(
                    ErrorCode.BROKER_NOT_AVAILABLE, f"node {node_id} is not in the cluster metadata"
                )
        task = self._connecting.get(node_id)
        if task is None:  # one connect per node even when many requests want it at once
            task = asyncio.ensure_future(self._open(broker.host, broker.port))
            self._connecting[node_id] = task
        try:
            connection = await task
        finally:
            self._connecting.pop(node_id, None)
        self._nodes[node_id] = connection
        return connection

    async def send(self, api_key: int, request, *, node_id: int | None = None, timeout_ms: int | None = None):
        """Sends one request to ``node_id`` (or any broker) at the negotiated version; returns the body."""
        connection = await (self._any_connection() if node_id is None else self._node_connection(node_id))
        return await connection.request(api_key, request, timeout_ms=timeout_ms)

    async def _controller_send(self, api_key: int, request, timeout_ms: int):
        """Admin requests go to the controller (a KRaft broker forwards); NOT_CONTROLLER is retried by callers.

        A controller that cannot be reached (it may have just died: brokers list it until its session expires)
        is not waited for: any broker forwards the request to whichever controller is active.
        """
        node_id = self.cluster.controller_id if self.cluster.controller_id in self.cluster.brokers else None
        # The request may wait broker-side up to timeout_ms; leave the connection a margin on top.
        connection_timeout_ms = timeout_ms + self.request_timeout_ms
        try:
            return await self.send(api_key, request, node_id=node_id, timeout_ms=connection_timeout_ms)
        except BrokerConnectionError:
            if node_id is None:
                raise
        return await self.send(api_key, request, timeout_ms=connection_timeout_ms)

    # -- metadata ----------------------------------------------------------------------------------

    async def metadata(
        self, topics: Iterable[str] | None = None, *, allow_auto_topic_creation: bool = False
    ) -> ClusterMetadata:
        """Metadata for ``topics`` (None = all topics, [] = brokers only); updates the routing cache.

        Per-topic errors are reported in ``TopicMetadata.error_code``, not raised.
        """
        names = None if topics is None else list(topics)
        request = mq.MetadataRequest(
            topics=None if names is None else [mq.MetadataRequestTopic(name=name) for name in names],
            allow_auto_topic_creation=allow_auto_topic_creation,
        )
        response = await self.send(ApiKey.METADATA, request)
        result = _convert_metadata(response)
        self.cluster.cluster_id = result.cluster_id
        self.cluster.controller_id = result.controller_id
        self.cluster.brokers = result.brokers
        for name, topic in result.topics.items():
            if topic.error_code == ErrorCode.NONE:
                self.cluster.topics[name] = topic
            else:
                self.cluster.topics.pop(name, None)
        await self._forget_departed_nodes()
        return result

    async def _forget_departed_nodes(self) -> None:
        for node_id in [n for n in self._nodes if n not in self.cluster.brokers]:
            await self._nodes.pop(node_id).close()

    async def topic(self, name: str, *, auto_create: bool = False, wait_ms: int = 10_000) -> TopicMetadata:
        """The topic's metadata once every partition has a leader; raises KafkaResponseError otherwise.

        With ``auto_create`` the broker may create the topic (as producers do); a just-created topic
        reports LEADER_NOT_AVAILABLE for a moment, so this polls for up to ``wait_ms``.
        """
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            result = await self.metadata([name], allow_auto_topic_creation=auto_create)
            topic = result.topics.get(name)
            if topic is None:
                error = KafkaResponseError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Metadata has no topic '{name}'")
            elif topic.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                error = KafkaResponseError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist.")
            elif topic.error_code:
                error = error_from_code(topic.error_code, None, api="Metadata", resource=_resource(name))
            elif not topic.partitions:
                error = KafkaResponseError(ErrorCode.LEADER_NOT_AVAILABLE, f"topic '{name}' has no partitions yet")
            elif any(p.leader_id == NO_LEADER for p in topic.partitions.values()):
                error = KafkaResponseError(ErrorCode.LEADER_NOT_AVAILABLE, f"topic '{name}' has leaderless partitions")
            else:
                return topic
            waiting_helps = error.error_code == ErrorCode.LEADER_NOT_AVAILABLE or (
                auto_create and error.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            )
            if not waiting_helps or time.monotonic() >= deadline:
                raise error
            await asyncio.sleep(self.retry_backoff_ms / 1000)

    async def _leader(self, topic: str, partition: int) -> int:
        metadata = self.cluster.topics.get(topic)
        if metadata is None or partition not in metadata.partitions:
            metadata = await self.topic(topic)
        partition_metadata = metadata.partitions.get(partition)
        if partition_metadata is None:
            raise KafkaResponseError(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                f"topic '{topic}' has {metadata.num_partitions} partitions; there is no partition {partition}",
            )
        if partition_metadata.leader_id == NO_LEADER:
            raise KafkaResponseError(ErrorCode.LEADER_NOT_AVAILABLE, f"{_resource(topic, partition)} has no leader")
        return partition_metadata.leader_id

    async def _group_by_leader(self, partitions: Iterable[TopicPartition]) -> dict[int, list[TopicPartition]]:
        by_leader: dict[int, list[TopicPartition]] = defaultdict(list)
        for topic, partition in partitions:
            by_leader[await self._leader(topic, partition)].append((topic, partition))
        return by_leader

    def _invalidate(self, topics: Iterable[str]) -> None:
        for topic in topics:
            self.cluster.topics.pop(topic, None)

    # -- admin -------------------------------------------------------------------------------------

    async def create_topics(
        self, topics: Sequence[NewTopic], *, timeout_ms: int = 30_000, validate_only: bool = False
    ) -> list[CreatedTopic]:
        """Creates topics; raises the first per-topic error (after all were attempted)."""
        request = ctq.CreateTopicsRequest(
            topics=[
                ctq.CreatableTopic(
                    name=topic.name,
                    num_partitions=topic.num_partitions,
                    replication_factor=topic.replication_factor,
                    assignments=[],
                    configs=[ctq.CreatableTopicConfig(name=k, value=v) for k, v in topic.configs.items()],
                )
                for topic in topics
            ],
            timeout_ms=timeout_ms,
            validate_only=validate_only,
        )
        response = await self._admin_with_retry(ApiKey.CREATE_TOPICS, request, timeout_ms,
                                                lambda r: [t.error_code for t in r.topics])
        created, errors = [], []
        for result in response.topics:
            if result.error_code:
                errors.append(error_from_code(result.error_code, result.error_message, api="CreateTopics",
                                              resource=_resource(result.name)))
                continue
            created.append(
                CreatedTopic(
                    name=result.name,
                    topic_id=None if result.topic_id == ZERO_UUID else result.topic_id,
                    num_partitions=result.num_partitions,
                    replication_factor=result.replication_factor,
                )
            )
        if errors:
            raise errors[0]
        return created

    async def create_topic(
        self,
        name: str,
        num_partitions: int = -1,
        replication_factor: int = -1,
        configs: Mapping[str, str | None] | None = None,
        *,
        timeout_ms: int = 30_000,
    ) -> CreatedTopic:
        topic = NewTopic(name, num_partitions, replication_factor, dict(configs or {}))
        (created,) = await self.create_topics([topic], timeout_ms=timeout_ms)
        return created

    async def delete_topics(self, names: Sequence[str], *, timeout_ms: int = 30_000) -> None:
        request = dtq.DeleteTopicsRequest(
            # v0-5 carry names in topic_names, v6+ in topics; the codec writes whichever the version has.
            topics=[dtq.DeleteTopicState(name=name, topic_id=ZERO_UUID) for name in names],
            topic_names=list(names),
            timeout_ms=timeout_ms,
        )
        response = await self._admin_with_retry(ApiKey.DELETE_TOPICS, request, timeout_ms,
                                                lambda r: [t.error_code for t in r.responses])
        self._invalidate(names)
        for result in response.responses:
            if result.error_code:
                raise error_from_code(result.error_code, result.error_message, api="DeleteTopics",
                                      resource=_resource(result.name or str(result.topic_id)))

    async def create_partitions(
        self, counts: Mapping[str, int], *, timeout_ms: int = 30_000, validate_only: bool = False
    ) -> None:
        """Raises each topic's partition count to ``counts[topic]`` (CreatePartitions)."""
        request = cpq.CreatePartitionsRequest(
            topics=[cpq.CreatePartitionsTopic(name=name, count=count, assignments=None)
                    for name, count in counts.items()],
            timeout_ms=timeout_ms,
            validate_only=validate_only,
        )
        response = await self._admin_with_retry(ApiKey.CREATE_PARTITIONS, request, timeout_ms,
                                                lambda r: [t.error_code for t in r.results])
        self._invalidate(counts)
        for result in response.results:
            if result.error_code:
                raise error_from_code(result.error_code, result.error_message, api="CreatePartitions",
                                      resource=_resource(result.name))

    async def _admin_with_retry(self, api_key: int, request, timeout_ms: int, error_codes):
        """Sends an admin request to the controller; NOT_CONTROLLER (a controller change under way) is retried
        with fresh metadata, at least ``retries`` times and for as long as ``timeout_ms`` lasts."""
        deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
        attempt = 0
        while True:
            response = await self._controller_send(api_key, request, timeout_ms)
            out_of_time = attempt >= self.retries and asyncio.get_running_loop().time() >= deadline
            if ErrorCode.NOT_CONTROLLER not in error_codes(response) or out_of_time:
                return response
            attempt += 1
            await asyncio.sleep(self.retry_backoff_ms / 1000)
            await self.metadata([])

    async def describe_configs(
        self,
        resources: Sequence[tuple[int, str]],
        *,
        keys: Sequence[str] | None = None,
        include_synonyms: bool = False,
    ) -> dict[tuple[int, str], list[ConfigEntry]]:
        """Configs of each (resource_type, name); raises the first per-resource error."""
        request = dcq.DescribeConfigsRequest(
            resources=[
                dcq.DescribeConfigsResource(resource_type=rtype, resource_name=name,
                                            configuration_keys=None if keys is None else list(keys))
                for rtype, name in resources
            ],
            include_synonyms=include_synonyms,
        )
        response = await self.send(ApiKey.DESCRIBE_CONFIGS, request)
        results: dict[tuple[int, str], list[ConfigEntry]] = {}
        for result in response.results:
            if result.error_code:
                raise error_from_code(result.error_code, result.error_message, api="DescribeConfigs",
                                      resource=f"resource {result.resource_name!r}")
            results[(result.resource_type, result.resource_name)] = [
                ConfigEntry(
                    name=entry.name,
                    value=entry.value,
                    # config_source exists from v1 on (our minimum); -1 would mean a broker left it unset.
                    source=entry.config_source if entry.config_source >= 0 else (5 if entry.is_default else 0),
                    read_only=entry.read_only,
                    is_sensitive=entry.is_sensitive,
                )
                for entry in result.configs
            ]
        return results

    async def describe_topic_configs(self, name: str) -> list[ConfigEntry]:
        results = await self.describe_configs([(ResourceType.TOPIC, name)])
        return results[(ResourceType.TOPIC, name)]

    # -- offsets -----------------------------------------------------------------------------------

    async def list_offsets(
        self, topic: str, partitions: Sequence[int], timestamp: int = LATEST_TIMESTAMP,
        *, isolation_level: int = READ_UNCOMMITTED,
    ) -> dict[int, OffsetAndTimestamp]:
        """ListOffsets for one topic: -1 latest (log end), -2 earliest (log start), -3 max timestamp,
        or the first offset whose timestamp is >= ``timestamp``."""
        pending = list(partitions)
        results: dict[int, OffsetAndTimestamp] = {}
        for attempt in range(self.retries + 1):
            retry: list[int] = []
            by_leader = await self._group_by_leader((topic, p) for p in pending)
            responses = await asyncio.gather(*(
                self._list_offsets_from(node_id, topic, [p for _, p in tps], timestamp, isolation_level)
                for node_id, tps in by_leader.items()
            ))
            for partition_results in responses:
                for partition, (error_code, value) in partition_results.items():
                    if not error_code:
                        results[partition] = value
                    elif error_code in _STALE_METADATA or error_code == ErrorCode.OFFSET_NOT_AVAILABLE:
                        retry.append(partition)
                        if attempt == self.retries:
                            raise error_from_code(error_code, None, api="ListOffsets",
                                                  resource=_resource(topic, partition))
                    else:
                        raise error_from_code(error_code, None, api="ListOffsets",
                                              resource=_resource(topic, partition))
            if not retry:
                return results
            pending = retry
            self._invalidate([topic])
            await asyncio.sleep(self.retry_backoff_ms / 1000)
        return results

    async def _list_offsets_from(self, node_id, topic, partitions, timestamp, isolation_level):
        request = loq.ListOffsetsRequest(
            replica_id=CONSUMER_REPLICA_ID,
            isolation_level=isolation_level,
            topics=[loq.ListOffsetsTopic(name=topic, partitions=[
                loq.ListOffsetsPartition(partition_index=p, current_leader_epoch=-1, timestamp=timestamp)
                for p in partitions
            ])],
        )
        response = await self.send(ApiKey.LIST_OFFSETS, request, node_id=node_id)
        out = {}
        for topic_response in response.topics:
            for p in topic_response.partitions:
                out[p.partition_index] = (
                    p.error_code, OffsetAndTimestamp(offset=p.offset, timestamp=p.timestamp,
                                                     leader_epoch=p.leader_epoch),
                )
        return out

    # -- produce -----------------------------------------------------------------------------------

    async def produce(
        self,
        topic: str,
        partition: int,
        records: Sequence[ProducerRecord | tuple],
        *,
        acks: int = -1,
        compression: int = 0,
        timeout_ms: int = 30_000,
    ) -> ProduceResult | None:
        """Appends ``records`` as one RecordBatch v2; returns the result (None with acks=0)."""
        results = await self.produce_many({(topic, partition): records}, acks=acks, compression=compression,
                                          timeout_ms=timeout_ms)
        return results.get((topic, partition))

    async def produce_many(
        self,
        batches: Mapping[TopicPartition, Sequence[ProducerRecord | tuple]],
        *,
        acks: int = -1,
        compression: int = 0,
        timeout_ms: int = 30_000,
    ) -> dict[TopicPartition, ProduceResult]:
        """One batch per partition, one Produce request per leader, all leaders in parallel.

        ``records`` items are ProducerRecord or ``(key, value, headers, timestamp_ms)`` tuples.
        Raises the first partition error that survives the retries.  With acks=0 the broker sends no
        response and the result is empty.
        """
        if acks not in (-1, 0, 1):
            raise ValueError(f"acks must be -1 (all), 0 or 1, got {acks}")
        encoded = {
            tp: (build_batch([_record_tuple(r) for r in records], compression=compression), len(records))
            for tp, records in batches.items() if records
        }
        results: dict[TopicPartition, ProduceResult] = {}
        for attempt in range(self.retries + 1):
            by_leader = await self._group_by_leader(encoded)
            responses = await asyncio.gather(*(
                self._produce_to(node_id, {tp: encoded[tp] for tp in tps}, acks, timeout_ms)
                for node_id, tps in by_leader.items()
            ))
            retry: dict[TopicPartition, tuple[bytes, int]] = {}
            for partition_results in responses:
                for tp, outcome in partition_results.items():
                    if isinstance(outcome, ProduceResult):
                        results[tp] = outcome
                    elif outcome.error_code in _PRODUCE_RETRIABLE and attempt < self.retries:
                        retry[tp] = encoded[tp]
                    else:
                        raise outcome
            if not retry:
                return results
            log.info("retrying produce to %s after a leadership error", sorted(retry))
            encoded = retry
            self._invalidate({topic for topic, _ in retry})
            await asyncio.sleep(self.retry_backoff_ms * (attempt + 1) / 1000)
        return results

    async def _produce_to(self, node_id: int, batches: dict[TopicPartition, tuple[bytes, int]], acks: int,
                          timeout_ms: int) -> dict[TopicPartition, ProduceResult | KafkaResponseError]:
        by_topic: dict[str, list] = defaultdict(list)
        for (topic, partition), (batch, _) in batches.items():
            by_topic[topic].append(pq.PartitionProduceData(index=partition, records=batch))
        request = pq.ProduceRequest(
            transactional_id=None,
            acks=acks,
            timeout_ms=timeout_ms,
            topic_data=[pq.TopicProduceData(name=t, partition_data=parts) for t, parts in by_topic.items()],
        )
        connection = await self._node_connection(node_id)
        if acks == 0:
            connection.send_without_response(ApiKey.PRODUCE, request)
            await connection.drain()
            return {}
        response = await connection.request(ApiKey.PRODUCE, request,
                                            timeout_ms=timeout_ms + self.request_timeout_ms)
        outcomes: dict[TopicPartition, ProduceResult | KafkaResponseError] = {}
        for topic_response in response.responses:
            for p in topic_response.partition_responses:
                tp = (topic_response.name, p.index)
                if p.error_code:
                    message = p.error_message or "; ".join(
                        e.batch_index_error_message or "" for e in p.record_errors) or None
                    outcomes[tp] = error_from_code(p.error_code, message, api="Produce",
                                                   resource=_resource(*tp))
                else:
                    outcomes[tp] = ProduceResult(
                        topic=tp[0], partition=tp[1], base_offset=p.base_offset,
                        log_append_time_ms=p.log_append_time_ms, log_start_offset=p.log_start_offset,
                        record_count=batches[tp][1] if tp in batches else 0,
                    )
        missing = set(batches) - set(outcomes)
        for tp in missing:
            outcomes[tp] = KafkaResponseError(ErrorCode.UNKNOWN_SERVER_ERROR,
                                              f"Produce response omitted {_resource(*tp)}",
                                              api="Produce", resource=_resource(*tp))
        return outcomes

    # -- fetch -------------------------------------------------------------------------------------

    async def fetch(
        self,
        positions: Mapping[TopicPartition, int],
        *,
        max_wait_ms: int = 500,
        min_bytes: int = 1,
        max_bytes: int = 50 * 1024 * 1024,
        partition_max_bytes: int = 1024 * 1024,
        isolation_level: int = READ_UNCOMMITTED,
    ) -> dict[TopicPartition, FetchedPartition]:
        """Fetches from each partition's leader (sessionless, in parallel) and decodes the records.

        Partition errors are returned in ``FetchedPartition.error_code`` (the caller decides: reset on
        OFFSET_OUT_OF_RANGE, wait on NOT_LEADER_OR_FOLLOWER...); metadata is refreshed on the next call
        after a leadership error.
        """
        by_leader = await self._group_by_leader(positions)
        responses = await asyncio.gather(*(
            self._fetch_from(node_id, {tp: positions[tp] for tp in tps}, max_wait_ms, min_bytes, max_bytes,
                             partition_max_bytes, isolation_level)
            for node_id, tps in by_leader.items()
        ))
        results: dict[TopicPartition, FetchedPartition] = {}
        for partial in responses:
            results.update(partial)
        stale = {tp[0] for tp, r in results.items() if r.error_code in _STALE_METADATA}
        self._invalidate(stale)
        return results

    async def _fetch_from(self, node_id, positions, max_wait_ms, min_bytes, max_bytes, partition_max_bytes,
                          isolation_level) -> dict[TopicPartition, FetchedPartition]:
        by_topic: dict[str, list] = defaultdict(list)
        for (topic, partition), offset in positions.items():
            by_topic[topic].append(fq.FetchPartition(
                partition=partition, current_leader_epoch=-1, fetch_offset=offset, last_fetched_epoch=-1,
                log_start_offset=-1, partition_max_bytes=partition_max_bytes,
            ))
        request = fq.FetchRequest(
            replica_id=CONSUMER_REPLICA_ID,
            max_wait_ms=max_wait_ms,
            min_bytes=min_bytes,
            max_bytes=max_bytes,
            isolation_level=isolation_level,
            session_id=0,
            session_epoch=-1,  # sessionless: every request is a full fetch
            topics=[fq.FetchTopic(topic=t, partitions=parts) for t, parts in by_topic.items()],
            forgotten_topics_data=[],
            rack_id="",
        )
        response = await self.send(ApiKey.FETCH, request, node_id=node_id,
                                   timeout_ms=max_wait_ms + self.request_timeout_ms)
        if response.error_code:
            raise error_from_code(response.error_code, None, api="Fetch", resource=f"node {node_id}")
        results = {}
        for topic_response in response.responses:
            for p in topic_response.partitions:
                tp = (topic_response.topic, p.partition_index)
                offset = positions.get(tp)
                if offset is None:
                    continue  # a partition we did not ask for: ignore rather than trust it
                records, next_offset = [], offset
                if not p.error_code and p.records is not None:
                    records, next_offset = decode_partition_records(
                        tp[0], tp[1], p.records, offset,
                        aborted=[(a.producer_id, a.first_offset) for a in (p.aborted_transactions or [])]
                        if isolation_level == READ_COMMITTED else None,
                    )
                results[tp] = FetchedPartition(
                    topic=tp[0], partition=tp[1], error_code=p.error_code, high_watermark=p.high_watermark,
                    last_stable_offset=p.last_stable_offset, log_start_offset=p.log_start_offset,
                    records=records, next_offset=next_offset,
                )
        return results


def _record_tuple(record: ProducerRecord | tuple) -> tuple:
    if isinstance(record, ProducerRecord):
        timestamp = record.timestamp_ms if record.timestamp_ms is not None else _now_ms()
        return record.key, record.value, record.headers, timestamp
    key, value, headers, timestamp = record
    return key, value, headers or (), timestamp if timestamp is not None else _now_ms()


def decode_partition_records(
    topic: str,
    partition: int,
    data,
    fetch_offset: int,
    *,
    aborted: Sequence[tuple[int, int]] | None = None,
) -> tuple[list[ConsumerRecord], int]:
    """Records at or after ``fetch_offset`` from a fetched partition's bytes, and the next fetch offset.

    Fetch returns whole batches, so the first batch may start below ``fetch_offset``; a truncated
    last batch (the response hit max_bytes) is ignored.  Control batches are skipped but advance the
    position.  ``aborted`` (read_committed only) lists (producer_id, first_offset) of aborted
    transactions: their data batches are dropped until the producer's ABORT marker.
    """
    view = memoryview(data)
    records: list[ConsumerRecord] = []
    next_offset = fetch_offset
    pending_aborts = sorted(aborted or [], key=lambda a: a[1])
    aborting: set[int] = set()
    for pos, header in iter_batch_headers(view):
        batch = view[pos : pos + header.size_in_bytes]
        next_offset = max(next_offset, header.next_offset)
        if header.next_offset <= fetch_offset:
            continue
        if not batch_crc_is_valid(view, pos, header):
            raise CorruptRecordError(
                f"{topic}-{partition}: record batch at offset {header.base_offset} fails its CRC-32C check")
        while pending_aborts and pending_aborts[0][1] <= header.last_offset:
            aborting.add(pending_aborts.pop(0)[0])
        if header.is_control:
            if header.is_transactional and header.producer_id in aborting:
                markers = decode_records(batch)
                if markers and control_record_type(markers[0]) == ControlRecordType.ABORT:
                    aborting.discard(header.producer_id)
            continue
        if header.is_transactional and header.producer_id in aborting:
            continue
        for record in decode_records(batch):
            if record.offset < fetch_offset:
                continue
            records.append(ConsumerRecord(
                topic=topic, partition=partition, offset=record.offset, timestamp=record.timestamp,
                timestamp_type=header.timestamp_type, key=record.key, value=record.value,
                headers=record.headers, leader_epoch=header.partition_leader_epoch,
            ))
    return records, next_offset


def _convert_metadata(response) -> ClusterMetadata:
    brokers = {
        b.node_id: BrokerInfo(node_id=b.node_id, host=b.host, port=b.port, rack=b.rack) for b in response.brokers
    }
    topics = {}
    for t in response.topics:
        if t.name is None:  # v12+ may omit names of topics asked for by id; we ask by name
            continue
        topics[t.name] = TopicMetadata(
            name=t.name,
            topic_id=None if t.topic_id == ZERO_UUID else t.topic_id,
            is_internal=t.is_internal,
            error_code=t.error_code,
            partitions={
                p.partition_index: PartitionMetadata(
                    partition=p.partition_index, leader_id=p.leader_id, leader_epoch=p.leader_epoch,
                    replica_nodes=tuple(p.replica_nodes), isr_nodes=tuple(p.isr_nodes),
                    offline_replicas=tuple(p.offline_replicas or ()), error_code=p.error_code,
                )
                for p in t.partitions
            },
        )
    return ClusterMetadata(cluster_id=response.cluster_id, controller_id=response.controller_id,
                           brokers=brokers, topics=topics)

