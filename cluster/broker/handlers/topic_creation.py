"""Creating topics on first use (Metadata auto-create, FindCoordinator's ``__consumer_offsets``).

Why it exists: both ask the active controller to create topics and answer only once the topics show in this
broker's own image, so the client's next look at this broker finds them; a refusal or a timeout is not an error
of the request (the answer then says the topic or coordinator is not available yet and the client retries).
"""

from __future__ import annotations

from cluster.broker.handlers.context import BrokerServices
from cluster.core.errors import KafkaError

VISIBLE_TIMEOUT_S = 2.0   # a change the controller committed shows in this broker's image within this


async def create_topics_and_wait(services: BrokerServices, topics: list[dict]) -> None:
    """Asks the controller to create ``topics`` (its create_topics arguments); waits, bounded, until they show."""
    metadata = services.metadata
    try:
        await services.controller.call_controller("create_topics", {"topics": topics})
    except KafkaError:
        return
    names = [topic["name"] for topic in topics]
    await metadata.wait_for_metadata(lambda: all(metadata.image.topics.get_topic(n) is not None for n in names),
                                     VISIBLE_TIMEOUT_S)
