"""Replica placement for new partitions: spread replicas and leaders evenly, racks apart.

Kafka's ``StripedReplicaPlacer`` (and the older ``AdminUtils.assignReplicasToBrokers``) aims for
three things, and so do we: (1) each broker leads about the same number of partitions, (2) each
broker holds about the same number of replicas, (3) when brokers carry ``broker.rack``, the replicas
of one partition sit on as many different racks as possible, so losing a rack loses at most one
copy while racks >= replication factor.

The method: order the brokers so that consecutive brokers alternate racks (rack A's first broker,
rack B's first, ..., rack A's second, ...), then give partition ``p`` the leader at position
``(start + p) mod n`` of that ring; its followers are the next brokers along the ring, skipping any
broker whose rack the partition already uses until every rack is used.  Leaders walk the ring one
step per partition, so leader counts differ by at most one; ``start`` is the number of partitions
already in the cluster, so consecutive topics continue the walk instead of all starting at broker 0.
Pure and deterministic: the same inputs give the same placement on every controller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cluster.core.errors import invariant

__all__ = ["place_replicas", "rack_alternating_order"]


def rack_alternating_order(broker_ids: Sequence[int], racks: Mapping[int, str | None]) -> list[int]:
    """Brokers sorted so that neighbours are on different racks where possible.

    A broker without a rack counts as its own rack (so a rackless cluster is plain id order).
    """
    by_rack: dict[object, list[int]] = {}
    for broker in sorted(broker_ids):
        rack = racks.get(broker)
        by_rack.setdefault(("rack", rack) if rack is not None else ("none", broker), []).append(broker)
    if all(key[0] == "none" for key in by_rack):
        return sorted(broker_ids)
    groups = [by_rack[key] for key in sorted(by_rack, key=lambda k: (k[0], str(k[1])))]
    order = []
    for depth in range(max(len(g) for g in groups)):
        order += [g[depth] for g in groups if depth < len(g)]
    return order


def place_replicas(broker_ids: Sequence[int], racks: Mapping[int, str | None], num_partitions: int,
                   replication_factor: int, start: int = 0) -> list[list[int]]:
    """Replica lists (leader first) for ``num_partitions`` new partitions over ``broker_ids``."""
    invariant(0 < replication_factor <= len(broker_ids), "replication factor must fit the brokers")
    ring = rack_alternating_order(broker_ids, racks)
    n = len(ring)
    rack_count = len({racks.get(b) if racks.get(b) is not None else ("none", b) for b in ring})
    placement = []
    for p in range(num_partitions):
        first = (start + p) % n
        # Followers start at a shift that grows every n partitions *of this topic* (as Kafka's placer does) so
        # that replica pairs vary too; counting the blocks from this topic's first partition keeps each block
        # a full turn of the ring, so every broker gets the same number of replicas in it.
        shift = 1 + (start // n + p // n) % max(1, n - 1)
        replicas = [ring[first]]
        used_racks = {_rack_key(racks, ring[first])}
        candidates = [ring[(first + shift + k) % n] for k in range(n)]
        for broker in candidates:
            if len(replicas) == replication_factor:
                break
            if broker in replicas:
                continue
            if _rack_key(racks, broker) in used_racks and len(used_racks) < rack_count:
                continue
            replicas.append(broker)
            used_racks.add(_rack_key(racks, broker))
        for broker in candidates:  # racks exhausted: fill with any broker not yet used
            if len(replicas) == replication_factor:
                break
            if broker not in replicas:
                replicas.append(broker)
        invariant(len(set(replicas)) == replication_factor, f"placement produced {replicas}")
        placement.append(replicas)
    return placement


def _rack_key(racks: Mapping[int, str | None], broker: int) -> object:
    rack = racks.get(broker)
    return rack if rack is not None else ("none", broker)
