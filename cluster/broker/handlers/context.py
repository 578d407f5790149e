"""What a handler may see for one request: the request's own fields and the broker's collaborators, each behind
the narrow interface the handlers use (Kafka's KafkaApis likewise gets its collaborators one by one).

Why it exists: handlers used to get the whole ``Broker`` and reach into it (``context.broker.x.y``), which tied
every handler to the broker's layout and made cluster/broker's modules import each other.  The object graph is
built once (``Broker.start`` -> ``BrokerServices``); handlers see only these interfaces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cluster.broker.partition import Partition
    from cluster.broker.topic_view import ImageTopicStore, TopicRecord
    from cluster.config import BrokerConfig
    from cluster.core.errors import ErrorCode
    from cluster.metadata import MetadataImage


class PartitionLookup(Protocol):
    """The partitions this broker hosts (the replica manager)."""

    store: ImageTopicStore   # topics by name / id, from the committed image

    def get(self, topic: str, partition_index: int) -> Partition | None: ...
    def missing_error(self, topic: str, partition_index: int) -> ErrorCode: ...
    def topic_configs(self, record: TopicRecord) -> dict[str, tuple[Any, int]]: ...


class MetadataView(Protocol):
    """The committed metadata image and the brokers in it, as this broker applied it."""

    image: MetadataImage
    cluster_id: str
    node_id: int

    def live_brokers(self, listener_name: str | None = None) -> list[tuple[int, str, int, str | None]]: ...
    def metadata_brokers(self, listener_name: str | None = None) -> list[tuple[int, str, int, str | None]]: ...
    def metadata_controller_id(self, broker_ids) -> int: ...
    def broker_address(self, broker_id: int, listener_name: str | None = None) -> tuple[str, int] | None: ...
    async def wait_for_metadata(self, predicate: Callable[[], bool], timeout_s: float) -> bool: ...


class ControllerChannel(Protocol):
    """Calls to the active controller, wherever it runs."""

    async def call_controller(self, op: str, args: dict, timeout_ms: int = ...,
                              attempt_timeout_ms: int | None = None): ...
    async def next_producer_id(self) -> int: ...


class GroupCoordination(Protocol):
    """The group coordinator runtime (requests in, answers or futures out)."""

    coordinator: Any

    def submit(self, method: str, request: Any) -> Any: ...
    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool: ...


class RequestMetrics(Protocol):
    def on_request(self, api_name: str) -> float: ...
    def on_response(self, api_name: str, started: float, response) -> None: ...
    def on_produce(self, topic: str, batches) -> None: ...
    def on_fetch(self, topic: str, size_bytes: int) -> None: ...


@dataclasses.dataclass(frozen=True)
class BrokerServices:
    """The broker's collaborators, built once at start and shared by every request."""

    config: BrokerConfig
    replicas: PartitionLookup
    metadata: MetadataView
    controller: ControllerChannel
    groups: GroupCoordination
    metrics: RequestMetrics
    now_ms: Callable[[], int]


@dataclasses.dataclass(frozen=True, slots=True)
class RequestContext:
    services: BrokerServices
    api_version: int
    correlation_id: int
    client_id: str | None
    peer: str
    # The listener (``NAME`` of ``NAME://host:port``) the request arrived on: Metadata and FindCoordinator
    # answer with each broker's endpoint for this listener.  None: the first advertised listener.
    listener_name: str | None = None

