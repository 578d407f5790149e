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
