"""SimNetwork: drop, duplication, delay, symmetric and one-way partitions."""

from __future__ import annotations

import random

from cluster.raft import VoteRequest
from cluster.testing.sim_network import NetworkFaults, SimNetwork


def message(source: int, destination: int) -> VoteRequest:
    return VoteRequest(source, destination, 1, 0, 0, True)


def test_reliable_network_delivers_once_within_the_delay_bounds():
    network = SimNetwork(random.Random(1), NetworkFaults(delay_min_ms=3, delay_max_ms=7))
    times = [network.send(message(1, 2), 100) for _ in range(200)]
    assert all(len(t) == 1 and 103 <= t[0] <= 107 for t in times)


def test_drop_and_duplicate_rates_are_roughly_respected():
    network = SimNetwork(random.Random(2), NetworkFaults(drop_probability=0.3, duplicate_probability=0.2))
    counts = [len(network.send(message(1, 2), 0)) for _ in range(2000)]
    assert 500 < counts.count(0) < 700 and 250 < counts.count(2) < 400


def test_long_delays_reorder_messages():
    network = SimNetwork(random.Random(3), NetworkFaults(long_delay_probability=0.5, long_delay_max_ms=2000))
    times = [network.send(message(1, 2), i)[0] for i in range(50)]
    assert times != sorted(times)


def test_symmetric_partition_cuts_both_directions_and_heals():
    network = SimNetwork(random.Random(4), NetworkFaults())
    partition = network.partition({1}, {2, 3})
    assert not network.link_up(1, 2) and not network.link_up(3, 1) and network.link_up(2, 3)
    assert network.send(message(1, 2), 0) == []
    network.heal(partition)
    assert network.link_up(1, 2) and network.send(message(1, 2), 0)


def test_one_way_partition_cuts_one_direction_only():
    network = SimNetwork(random.Random(5), NetworkFaults())
    network.partition({1}, {2}, one_way=True)
    assert not network.link_up(1, 2) and network.link_up(2, 1)


def test_overlapping_partitions_heal_independently():
    network = SimNetwork(random.Random(6), NetworkFaults())
    first = network.partition({1}, {2})
    network.partition({1}, {2, 3})
    network.heal(first)
    assert not network.link_up(1, 2)
    network.heal_all()
    assert network.link_up(1, 2) and network.active_partitions == 0
