"""The client against scripted in-process brokers: negotiation, pipelining, routing, errors.

Each ``FakeBroker`` is a real TCP server on 127.0.0.1 that decodes requests with our codecs and
answers with whatever the test's handlers return, so the client's socket code runs for real while
the broker's behaviour (versions, delays, errors, leadership) is fully under the test's control.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import uuid

import pytest

from cluster.client import (
    ApiKey,
    BrokerConnection,
    BrokerConnectionError,
    KafkaClient,
    KafkaResponseError,
    ProducerRecord,
    RequestTimeoutError,
)
from cluster.core.errors import ErrorCode, KafkaError
from cluster.wire.headers import decode_request_header, encode_response_header
from cluster.wire.messages import API_KEYS, response_header_version
from cluster.wire.messages import api_versions_response as avr
from cluster.wire.messages import create_topics_response as ctr
from cluster.wire.messages import metadata_request as mq
from cluster.wire.messages import metadata_response as mr
from cluster.wire.messages import produce_response as prr
from cluster.wire.records import decode_records

DEFAULT_VERSIONS = {0: (0, 9), 1: (4, 12), 2: (1, 7), 3: (0, 12), 18: (0, 4), 19: (2, 4), 20: (1, 4),
                    32: (1, 4), 37: (0, 3)}


def run(coroutine, timeout_s: float = 15.0):
    async def bounded():
        return await asyncio.wait_for(coroutine, timeout_s)

    return asyncio.run(bounded())


def api_versions_handler(versions):
    def handle(header, request):
        return avr.ApiVersionsResponse(
            error_code=0,
            api_keys=[avr.ApiVersion(api_key=k, min_version=lo, max_version=hi) for k, (lo, hi) in versions.items()],
        )
    return handle


class FakeBroker:
    """A scripted broker: ``handlers[api_key](header, request)`` returns a response object, a
    ``(response, encode_version)`` pair, None (no response), or an awaitable of one of those."""

    def __init__(self, versions=None) -> None:
        self.handlers = {ApiKey.API_VERSIONS: api_versions_handler(versions or DEFAULT_VERSIONS)}
        self.requests: list[tuple[object, object]] = []
        self.port = 0
        self._server = None
        self._writers = []

    async def __aenter__(self) -> FakeBroker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def requests_of(self, api_key: int) -> list:
        return [body for header, body in self.requests if header.api_key == api_key]

    async def _serve(self, reader, writer) -> None:
        self._writers.append(writer)
        try:
            while True:
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                frame = await reader.readexactly(size)
                header, pos = decode_request_header(frame, 0)
                body, _ = API_KEYS[header.api_key].request_module.decode(frame, pos, header.api_version)
                self.requests.append((header, body))
                asyncio.ensure_future(self._respond(writer, header, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def _respond(self, writer, header, body) -> None:
        result = self.handlers[header.api_key](header, body)
        if asyncio.iscoroutine(result):
            result = await result
        if result is None:
            return
        response, version = result if isinstance(result, tuple) else (result, header.api_version)
        payload = encode_response_header(header.correlation_id,
                                         response_header_version(header.api_key, header.api_version))
        payload += bytes(API_KEYS[header.api_key].response_module.encode(response, version))
        writer.write(struct.pack(">i", len(payload)) + payload)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- connection --------------------------------------------------------------------------------------


def test_versions_are_min_of_ours_and_the_brokers():
    async def scenario():
        async with FakeBroker({18: (0, 3), 3: (0, 5), 1: (4, 20), 0: (0, 9)}) as broker:
            connection = await BrokerConnection.open("127.0.0.1", broker.port)
            try:
                assert connection.version_for(ApiKey.METADATA) == 5  # broker max below ours (12)
                assert connection.version_for(ApiKey.FETCH) == 12  # our max below the broker's (20)
                assert connection.version_for(ApiKey.PRODUCE) == 9
                header, _ = broker.requests[0]
                assert (header.api_key, header.api_version) == (ApiKey.API_VERSIONS, 3)
            finally:
                await connection.close()

    run(scenario())


def test_disjoint_or_missing_ranges_raise_unsupported_version_naming_both():
    async def scenario():
        async with FakeBroker({18: (0, 3), 0: (0, 2)}) as broker:
            connection = await BrokerConnection.open("127.0.0.1", broker.port)
            try:
                with pytest.raises(KafkaError) as produce_error:
                    connection.version_for(ApiKey.PRODUCE)
                with pytest.raises(KafkaError) as fetch_error:
                    connection.version_for(ApiKey.FETCH)
            finally:
                await connection.close()
        assert produce_error.value.error_code == ErrorCode.UNSUPPORTED_VERSION
        assert "Produce v0-2" in str(produce_error.value) and "v3-9" in str(produce_error.value)
        assert fetch_error.value.error_code == ErrorCode.UNSUPPORTED_VERSION
        assert "does not support Fetch" in str(fetch_error.value)

    run(scenario())


def test_apiversions_kip511_fallback_parses_a_v0_error_body_and_retries_lower():
    async def scenario():
        async with FakeBroker() as broker:
            def old_broker(header, request):
                if header.api_version > 2:  # a broker that knows ApiVersions only up to v2
                    return avr.ApiVersionsResponse(
                        error_code=ErrorCode.UNSUPPORTED_VERSION,
                        api_keys=[avr.ApiVersion(api_key=18, min_version=0, max_version=2)]), 0
                return api_versions_handler({18: (0, 2), 3: (0, 8)})(header, request)

            broker.handlers[ApiKey.API_VERSIONS] = old_broker
            connection = await BrokerConnection.open("127.0.0.1", broker.port)
            await connection.close()
        assert [h.api_version for h, _ in broker.requests] == [3, 2]
        assert connection.api_versions == {18: (0, 2), 3: (0, 8)}

    run(scenario())


def test_pipelined_requests_are_matched_by_correlation_id_even_out_of_order():
    async def scenario():
        async with FakeBroker() as broker:
            both_arrived = asyncio.Event()

            async def metadata(header, request):
                if len(broker.requests_of(ApiKey.METADATA)) == 2:
                    both_arrived.set()
                await both_arrived.wait()  # answer only once both requests are in flight
                name = request.topics[0].name
                if name == "slow":
                    await asyncio.sleep(0.2)  # ... and answer the first one last
                return mr.MetadataResponse(controller_id=1, topics=[mr.MetadataResponseTopic(name=name)])

            broker.handlers[ApiKey.METADATA] = metadata
            connection = await BrokerConnection.open("127.0.0.1", broker.port)
            try:
                slow = asyncio.ensure_future(connection.request(
                    ApiKey.METADATA, mq.MetadataRequest(topics=[mq.MetadataRequestTopic(name="slow")])))
                fast = asyncio.ensure_future(connection.request(
                    ApiKey.METADATA, mq.MetadataRequest(topics=[mq.MetadataRequestTopic(name="fast")])))
                done, _ = await asyncio.wait([slow, fast], return_when=asyncio.FIRST_COMPLETED)
                assert done == {fast}
                assert (await slow).topics[0].name == "slow"
                assert (await fast).topics[0].name == "fast"
            finally:
                await connection.close()
        correlation_ids = [h.correlation_id for h, _ in broker.requests]
        assert len(set(correlation_ids)) == len(correlation_ids) == 3

    run(scenario())


def test_a_request_without_answer_times_out_naming_api_and_address():
    async def scenario():
        async with FakeBroker() as broker:
            broker.handlers[ApiKey.METADATA] = lambda header, request: None
            connection = await BrokerConnection.open("127.0.0.1", broker.port, request_timeout_ms=200)
            try:
                with pytest.raises(RequestTimeoutError) as error:
                    await connection.request(ApiKey.METADATA, mq.MetadataRequest(topics=[]))
            finally:
                await connection.close()
        assert broker.address in str(error.value)
        assert "Metadata v12" in str(error.value)

    run(scenario())


def test_broker_closing_the_socket_fails_pending_requests_at_once():
    async def scenario():
        async with FakeBroker() as broker:
            async def hang_up(header, request):
                for writer in broker._writers:
                    writer.close()

            broker.handlers[ApiKey.METADATA] = hang_up
            connection = await BrokerConnection.open("127.0.0.1", broker.port, request_timeout_ms=10_000)
            try:
                with pytest.raises(BrokerConnectionError, match="closed by the broker"):
                    await connection.request(ApiKey.METADATA, mq.MetadataRequest(topics=[]))
                assert connection.closed
                with pytest.raises(BrokerConnectionError):
                    await connection.request(ApiKey.METADATA, mq.MetadataRequest(topics=[]))
            finally:
                await connection.close()

    run(scenario())


def test_unreachable_broker_error_names_the_address():
    port = closed_port()
    with pytest.raises(BrokerConnectionError) as error:
        run(BrokerConnection.open("127.0.0.1", port))
    assert error.value.address == f"127.0.0.1:{port}"
    assert "connection refused" in str(error.value)


# -- client: bootstrap, routing, errors ---------------------------------------------------------------


def cluster_metadata(brokers: dict[int, FakeBroker], leaders: dict[int, int], topic="t", controller_id=1):
    def handle(header, request):
        topics = []
        wanted = None if request.topics is None else {t.name for t in request.topics}
        if wanted is None or topic in wanted:
            topics.append(mr.MetadataResponseTopic(
                name=topic, topic_id=uuid.UUID(int=1), partitions=[
                    mr.MetadataResponsePartition(partition_index=p, leader_id=leader, leader_epoch=3,
                                                 replica_nodes=[leader], isr_nodes=[leader])
                    for p, leader in sorted(leaders.items())
                ]))
        for name in sorted((wanted or set()) - {topic}):
            topics.append(mr.MetadataResponseTopic(name=name, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
        return mr.MetadataResponse(
            brokers=[mr.MetadataResponseBroker(node_id=n, host="127.0.0.1", port=b.port) for n, b in brokers.items()],
            cluster_id="fake", controller_id=controller_id, topics=topics)
    return handle


def produce_ok(base_offset=0):
    def handle(header, request):
        return prr.ProduceResponse(responses=[
            prr.TopicProduceResponse(name=t.name, partition_responses=[
                prr.PartitionProduceResponse(index=p.index, error_code=0, base_offset=base_offset)
                for p in t.partition_data])
            for t in request.topic_data])
    return handle


def produced(broker: FakeBroker) -> dict[int, list[bytes]]:
    out = {}
    for request in broker.requests_of(ApiKey.PRODUCE):
        for topic in request.topic_data:
            for p in topic.partition_data:
                out.setdefault(p.index, []).extend(r.value for r in decode_records(p.records))
    return out


def test_produce_is_routed_to_each_partitions_leader_node():
    async def scenario():
        async with FakeBroker() as one, FakeBroker() as two:
            brokers = {1: one, 2: two}
            for broker in brokers.values():
                broker.handlers[ApiKey.METADATA] = cluster_metadata(brokers, {0: 1, 1: 2})
                broker.handlers[ApiKey.PRODUCE] = produce_ok(base_offset=5)
            async with KafkaClient(one.address) as client:
                results = await client.produce_many({
                    ("t", 0): [ProducerRecord(value=b"p0")],
                    ("t", 1): [ProducerRecord(value=b"p1a"), ProducerRecord(value=b"p1b")],
                })
            return one, two, results

    one, two, results = run(scenario())
    assert produced(one) == {0: [b"p0"]}
    assert produced(two) == {1: [b"p1a", b"p1b"]}
    assert results[("t", 1)].base_offset == 5 and results[("t", 1)].record_count == 2


def test_produce_retries_on_not_leader_after_refreshing_metadata():
    async def scenario():
        async with FakeBroker() as one, FakeBroker() as two:
            brokers = {1: one, 2: two}
            leaders = {0: 1}
            for broker in brokers.values():
                broker.handlers[ApiKey.METADATA] = cluster_metadata(brokers, leaders)

            def deposed(header, request):
                leaders[0] = 2  # leadership moved; the next Metadata says so
                return prr.ProduceResponse(responses=[prr.TopicProduceResponse(name="t", partition_responses=[
                    prr.PartitionProduceResponse(index=0, error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER)])])

            one.handlers[ApiKey.PRODUCE] = deposed
            two.handlers[ApiKey.PRODUCE] = produce_ok(base_offset=9)
            async with KafkaClient(one.address, retry_backoff_ms=1) as client:
                result = await client.produce("t", 0, [(b"k", b"v", [], 1)])
            return one, two, result

    one, two, result = run(scenario())
    assert result.base_offset == 9
    assert produced(one) == {0: [b"v"]} and produced(two) == {0: [b"v"]}


def test_produce_error_that_is_not_retriable_names_the_code_and_partition():
    async def scenario():
        async with FakeBroker() as one:
            one.handlers[ApiKey.METADATA] = cluster_metadata({1: one}, {0: 1})
            one.handlers[ApiKey.PRODUCE] = lambda header, request: prr.ProduceResponse(responses=[
                prr.TopicProduceResponse(name="t", partition_responses=[prr.PartitionProduceResponse(
                    index=0, error_code=ErrorCode.MESSAGE_TOO_LARGE, error_message=None)])])
            async with KafkaClient(one.address) as client:
                with pytest.raises(KafkaResponseError) as error:
                    await client.produce("t", 0, [(None, b"v", [], 1)])
            return error.value

    error = run(scenario())
    assert error.error_code == ErrorCode.MESSAGE_TOO_LARGE
    assert str(error) == "MESSAGE_TOO_LARGE: Produce failed for partition t-0"


def test_acks_zero_sends_without_waiting_for_a_response():
    async def scenario():
        async with FakeBroker() as one:
            one.handlers[ApiKey.METADATA] = cluster_metadata({1: one}, {0: 1})
            one.handlers[ApiKey.PRODUCE] = lambda header, request: None  # Kafka never answers acks=0
            async with KafkaClient(one.address, request_timeout_ms=60_000) as client:
                result = await client.produce("t", 0, [(None, b"fire", [], 1)], acks=0)
                for _ in range(100):
                    if one.requests_of(ApiKey.PRODUCE):
                        break
                    await asyncio.sleep(0.01)
            return one, result

    one, result = run(scenario(), timeout_s=5)
    assert result is None
    assert one.requests_of(ApiKey.PRODUCE)[0].acks == 0


def test_admin_error_carries_code_name_and_broker_message():
    async def scenario():
        async with FakeBroker() as one:
            one.handlers[ApiKey.METADATA] = cluster_metadata({1: one}, {0: 1})
            one.handlers[ApiKey.CREATE_TOPICS] = lambda header, request: ctr.CreateTopicsResponse(topics=[
                ctr.CreatableTopicResult(name="t", error_code=ErrorCode.TOPIC_ALREADY_EXISTS,
                                         error_message="Topic 't' already exists.")])
            async with KafkaClient(one.address) as client:
                with pytest.raises(KafkaResponseError) as error:
                    await client.create_topic("t", 3, 1)
            return one, error.value

    one, error = run(scenario())
    assert str(error) == "TOPIC_ALREADY_EXISTS: Topic 't' already exists."
    (request,) = one.requests_of(ApiKey.CREATE_TOPICS)
    assert (request.topics[0].num_partitions, request.topics[0].replication_factor) == (3, 1)


def test_unknown_topic_is_a_kafka_error_not_a_hang():
    async def scenario():
        async with FakeBroker() as one:
            one.handlers[ApiKey.METADATA] = cluster_metadata({1: one}, {0: 1})
            async with KafkaClient(one.address) as client:
                with pytest.raises(KafkaResponseError) as error:
                    await client.topic("missing")
            return error.value

    assert run(scenario(), timeout_s=5).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_bootstrap_skips_unreachable_servers_and_reports_all_when_none_answer():
    async def scenario():
        dead = closed_port()
        async with FakeBroker() as one:
            one.handlers[ApiKey.METADATA] = cluster_metadata({1: one}, {0: 1})
            async with KafkaClient(f"127.0.0.1:{dead},{one.address}") as client:
                assert set(client.cluster.brokers) == {1}
        other = closed_port()
        with pytest.raises(BrokerConnectionError) as error:
            async with KafkaClient(f"127.0.0.1:{dead},127.0.0.1:{other}"):
                pass
        return dead, other, error.value

    dead, other, error = run(scenario())
    assert f"127.0.0.1:{dead}" in str(error) and f"127.0.0.1:{other}" in str(error)
    assert "no bootstrap server reachable" in str(error)


@pytest.mark.parametrize("version", [1, 4, 5, 6])
def test_delete_topics_names_the_topics_at_every_version_we_speak(version):
    # v0-5 carry names in topic_names, v6 in topics[].name: the client must fill the right one.
    from cluster.wire.messages import delete_topics_response as dtr

    async def scenario():
        versions = dict(DEFAULT_VERSIONS)
        versions[ApiKey.DELETE_TOPICS] = (version, version)
        async with FakeBroker(versions) as one:
            one.handlers[ApiKey.METADATA] = cluster_metadata({1: one}, {0: 1})

            def delete(header, request):
                names = [t.name for t in request.topics] if header.api_version >= 6 else request.topic_names
                return dtr.DeleteTopicsResponse(responses=[
                    dtr.DeletableTopicResult(name=n, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if n == "b" else 0)
                    for n in names])

            one.handlers[ApiKey.DELETE_TOPICS] = delete
            async with KafkaClient(one.address) as client:
                await client.delete_topics(["a"])
                with pytest.raises(KafkaResponseError) as error:
                    await client.delete_topics(["a", "b"])
            return one, error.value

    one, error = run(scenario())
    assert error.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION and "'b'" in str(error)
    assert [(h.api_key, h.api_version) for h, _ in one.requests if h.api_key == ApiKey.DELETE_TOPICS] == [
        (ApiKey.DELETE_TOPICS, version)] * 2


@pytest.mark.parametrize("version", [1, 4, 7, 9, 10, 12])
def test_metadata_is_understood_at_every_version_we_speak(version):
    async def scenario():
        versions = dict(DEFAULT_VERSIONS)
        versions[ApiKey.METADATA] = (0, version)
        async with FakeBroker(versions) as one, FakeBroker(versions) as two:
            brokers = {1: one, 2: two}
            for broker in brokers.values():
                broker.handlers[ApiKey.METADATA] = cluster_metadata(brokers, {0: 2, 1: 1}, controller_id=2)
            async with KafkaClient(one.address) as client:
                topic = await client.topic("t")
                everything = await client.metadata(None)
                missing = await client.metadata(["nope"])
            return client, topic, everything, missing

    client, topic, everything, missing = run(scenario())
    assert set(client.cluster.brokers) == {1, 2} and client.cluster.controller_id == 2
    assert {p: m.leader_id for p, m in topic.partitions.items()} == {0: 2, 1: 1}
    assert topic.partitions[0].leader_epoch == (3 if version >= 7 else -1)
    assert set(everything.topics) == {"t"}
    assert missing.topics["nope"].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
