"""What a cluster broker's Metadata answer names as controller: always a broker it lists (librdkafka's AdminClient
waits until the controller id is a known broker), the quorum leader when it can."""

from __future__ import annotations

from types import SimpleNamespace

from cluster.broker.cluster_mode import ClusterRuntime

controller_id = ClusterRuntime.metadata_controller_id


def _runtime(node_id: int, leader_id: int | None):
    return SimpleNamespace(node_id=node_id, driver=SimpleNamespace(leader_id=leader_id))


def test_the_quorum_leader_when_it_is_a_listed_broker():
    assert controller_id(_runtime(1, 2), [1, 2, 3]) == 2


def test_this_broker_when_the_leader_is_not_listed_or_unknown():
    assert controller_id(_runtime(1, 2), [1, 3]) == 1      # leader fenced or dead: we forward
    assert controller_id(_runtime(3, None), [1, 3]) == 3   # election under way


def test_another_listed_broker_when_neither_is_listed_and_none_when_nothing_is():
    assert controller_id(_runtime(4, 5), [2, 3]) == 2
    assert controller_id(_runtime(4, 5), []) == -1
