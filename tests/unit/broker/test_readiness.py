"""/readyz means serving, registered, caught up with metadata and unfenced (a single node too: it is a
one-voter quorum whose controller unfences it)."""

from cluster.broker.app import Broker
from cluster.config import BrokerConfig


class FakeCluster:
    fenced = True


def test_ready_only_when_serving_and_unfenced(tmp_path):
    broker = Broker(BrokerConfig.from_sources(overrides={"log.dirs": str(tmp_path)}, environ={}))
    assert broker.is_ready() is False  # not serving yet
    broker.quorum = FakeCluster()
    broker.ready = True
    assert broker.is_ready() is False  # fenced: not caught up with metadata yet
    broker.quorum.fenced = False
    assert broker.is_ready() is True
    broker.ready = False  # shutting down
    assert broker.is_ready() is False
