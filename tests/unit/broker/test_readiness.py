"""/readyz means serving and, in a cluster, registered, caught up with metadata and unfenced."""

from cluster.broker.app import Broker
from cluster.config import BrokerConfig


class FakeCluster:
    fenced = True


def test_ready_only_when_serving_and_unfenced(tmp_path):
    broker = Broker(BrokerConfig.from_sources(overrides={"log.dirs": str(tmp_path)}, environ={}))
    assert broker.is_ready() is False  # not serving yet
    broker.ready = True
    assert broker.is_ready() is True  # single node: serving is enough
    broker.cluster = FakeCluster()
    assert broker.is_ready() is False  # fenced: not caught up with metadata yet
    broker.cluster.fenced = False
    assert broker.is_ready() is True
    broker.ready = False  # shutting down
    assert broker.is_ready() is False
