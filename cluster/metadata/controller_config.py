"""The controller's configuration and the shape of every decision, shared by the control managers.

Why it exists: ``QuorumController`` (controller.py) composes control managers (cluster_control.py,
replication_control.py, configuration_control.py, producer_id_control.py), and each of them decides with the same
config and answers with the same ``ControllerResult``; keeping these here lets the managers import them without
importing the controller that composes them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ControllerConfig", "ControllerResult", "STALL_FRACTION_OF_SESSION"]

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
