"""What a handler may see of the broker for one request."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cluster.broker.app import Broker


@dataclasses.dataclass(frozen=True)
class RequestContext:
    broker: Broker
    api_version: int
    correlation_id: int
    client_id: str | None
    peer: str
    # The listener (``NAME`` of ``NAME://host:port``) the request arrived on: Metadata and FindCoordinator
    # answer with each broker's endpoint for this listener.  None: the first advertised listener.
    listener_name: str | None = None
