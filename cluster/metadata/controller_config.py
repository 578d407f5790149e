"""The controller's configuration and the shape of every decision, shared by the control managers.

Why it exists: ``QuorumController`` (controller.py) composes control managers (cluster_control.py,
replication_control.py, configuration_control.py, producer_id_control.py), and each of them decides with the same
config and answers with the same ``ControllerResult``; keeping these here lets the managers import them without
importing the controller that composes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cluster.metadata.image import MetadataImage

__all__ = ["ControlManager", "ControllerConfig", "ControllerResult", "STALL_FRACTION_OF_SESSION"]

# A gap between two ticks longer than this fraction of a session is a stall of the controller itself (see tick).
STALL_FRACTION_OF_SESSION = 3


@dataclass(frozen=True)
class ControllerConfig:
    broker_session_timeout_ms: int = 9000
    num_partitions: int = 1
    default_replication_factor: int = 1
    unclean_leader_election_enable: bool = False
    delete_topic_enable: bool = True


@dataclass(frozen=True)
class ControllerResult:
    """Records to commit, and the response to release once they are committed."""

    records: tuple = ()
    response: object = None


class ControlManager:
    """A control manager decides from the image the controller holds now (``image()``), which it never keeps:
    the controller replaces its image after every replayed batch."""

    def __init__(self, image: Callable[[], MetadataImage]) -> None:
        self._image = image

    @property
    def image(self) -> MetadataImage:
        """The image decisions start from: the controller's (committed, plus what it just decided)."""
        return self._image()
