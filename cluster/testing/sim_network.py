"""The simulated network: per-message drop, duplication, random delay (hence reordering) and partitions.

Why: KRaft must stay safe whatever the network does, and live once it behaves.  The simulator routes every
message through ``SimNetwork.send``, which returns zero, one or two delivery times; partitions are sets of
cut *directed* links, so a symmetric partition cuts both directions and a one-way partition only one (the
nastiest case for failure detectors: A hears B but B never hears A).  A link is checked when the message
is sent and again when it would arrive, so a partition also swallows messages already in flight.
All times are simulated milliseconds; all randomness comes from the injected ``random.Random``.
"""

from __future__ import annotations

import dataclasses
import random

from cluster.raft.messages import RaftMessage


@dataclasses.dataclass(frozen=True, slots=True)
class NetworkFaults:
    """Knobs of the message-level faults (probabilities per message, delays in ms)."""

    drop_probability: float = 0.0
    duplicate_probability: float = 0.0
    delay_min_ms: int = 1
    delay_max_ms: int = 10
    long_delay_probability: float = 0.0     # a straggler: delayed up to ``long_delay_max_ms``
    long_delay_max_ms: int = 3000


RELIABLE = NetworkFaults()


class SimNetwork:
    """Decides the fate of each message; holds the current partitions as cut directed links."""

    def __init__(self, rng: random.Random, faults: NetworkFaults) -> None:
        self._rng = rng
        self.faults = faults
        self._partitions: dict[int, frozenset[tuple[int, int]]] = {}
        self._cut: set[tuple[int, int]] = set()
        self._next_partition_id = 1
        self.sent = 0
        self.dropped = 0

    def send(self, message: RaftMessage, now_ms: int) -> list[int]:
        """Delivery times for ``message`` (empty if lost, two if duplicated)."""
        self.sent += 1
        faults, rng = self.faults, self._rng
        if not self.link_up(message.source_id, message.destination_id) or rng.random() < faults.drop_probability:
            self.dropped += 1
            return []
        copies = 2 if rng.random() < faults.duplicate_probability else 1
        return [now_ms + self._delay_ms() for _ in range(copies)]

    def _delay_ms(self) -> int:
        faults, rng = self.faults, self._rng
        if faults.long_delay_probability and rng.random() < faults.long_delay_probability:
            return rng.randint(faults.delay_max_ms, faults.long_delay_max_ms)
        return rng.randint(faults.delay_min_ms, faults.delay_max_ms)

    def link_up(self, source_id: int, destination_id: int) -> bool:
        return (source_id, destination_id) not in self._cut

    # -- partitions ------------------------------------------------------------------------------------------------
    def partition(self, side_a: set[int], side_b: set[int], *, one_way: bool = False) -> int:
        """Cuts links from ``side_a`` to ``side_b`` (and back unless ``one_way``); returns an id for ``heal``."""
        links = {(a, b) for a in side_a for b in side_b}
        if not one_way:
            links |= {(b, a) for a in side_a for b in side_b}
        partition_id = self._next_partition_id
        self._next_partition_id += 1
        self._partitions[partition_id] = frozenset(links)
        self._recompute()
        return partition_id

    def heal(self, partition_id: int) -> None:
        self._partitions.pop(partition_id, None)
        self._recompute()

    def heal_all(self) -> None:
        self._partitions.clear()
        self._recompute()

    @property
    def active_partitions(self) -> int:
        return len(self._partitions)

    def _recompute(self) -> None:
        self._cut = set().union(*self._partitions.values()) if self._partitions else set()
