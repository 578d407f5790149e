"""Topics, partitions, ISR changes, reassignments and leader elections (Kafka's ReplicationControlManager).

Why it exists: the largest share of the controller's decisions is about partitions, and they all go through one
change builder (``_change``, Kafka's ``PartitionChangeBuilder``); the other control managers ask it to move
leaderships away from a broker that leaves, or to elect leaders when a broker returns.  Decisions are pure
functions of the image (``QuorumController`` owns it): each returns a ``ControllerResult(records, response)``.

Leader election follows ``PartitionChangeBuilder`` without ELR (Kafka 3.9 default): keep the current
leader if it is still acceptable, else the first replica (in assignment order) that is in the ISR and
acceptable (registered, unfenced, not shutting down); none -> leader -1.  A broker leaving is removed
from the ISR only if the ISR stays non-empty, so a partition whose last ISR member is fenced keeps
that member in its ISR and goes leaderless until it returns (no unclean election unless
``unclean.leader.election.enable`` is true for the topic or the cluster).

Reassignment follows KIP-455: starting one writes replicas = target + leaving, with ``adding_replicas``
and ``removing_replicas``; every later partition change (an ISR expansion above all) completes it once
all adding replicas are in the ISR: replicas become the target, the ISR loses the removed ones, and a
removed leader is replaced by the first target replica in the ISR.  Brokers drop a removed replica
through ``MetadataDelta.local_changes``.  Leadership goes back to the preferred (first) replica only
through ElectLeaders or the periodic imbalance check (``rebalance_leaders``), never on unfence, as in Kafka.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cluster.core.errors import ErrorCode, KafkaError, invariant
from cluster.core.names import INTERNAL_TOPICS, validate_topic_name
from cluster.metadata.controller_config import ControllerConfig, ControllerResult, ControlManager
from cluster.metadata.delta import NO_LEADER_CHANGE, merge_partition_change
from cluster.metadata.image import (
    NO_LEADER,
    TOPIC_RESOURCE,
    MetadataImage,
    PartitionRegistration,
    TopicImage,
)
from cluster.metadata.placement import place_replicas
from cluster.wire.metadata_records import (
    config_record,
    partition_change_record,
    partition_record,
    remove_topic_record,
    topic_record,
)

__all__ = ["AlterPartitionResult", "CreateTopicResult", "ELECTION_PREFERRED", "ELECTION_UNCLEAN", "NewTopic",
           "OngoingReassignment", "ReplicationControlManager"]

MAX_PARTITIONS_PER_TOPIC = 10_000
LEADER_RECOVERING = 1
ELECTION_PREFERRED = 0  # ElectLeaders' ElectionType
ELECTION_UNCLEAN = 1


@dataclass(frozen=True)
class NewTopic:
    name: str
    num_partitions: int = -1  # -1: num.partitions
    replication_factor: int = -1  # -1: default.replication.factor
    assignments: Mapping[int, Sequence[int]] | None = None  # partition -> replicas (manual placement)
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateTopicResult:
    name: str
    error_code: ErrorCode
    error_message: str | None = None
    topic_id: uuid.UUID | None = None
    num_partitions: int = -1
    replication_factor: int = -1


@dataclass(frozen=True)
class _Assignment:
    """A partition's replica set with its reassignment state (Kafka's PartitionReassignmentReplicas)."""

    replicas: tuple[int, ...]
    adding: tuple[int, ...] = ()
    removing: tuple[int, ...] = ()

    @staticmethod
    def start(current: Sequence[int], target: Sequence[int]) -> _Assignment:
        """target first (its order is the new preference), then the current replicas leaving."""
        leaving = tuple(b for b in current if b not in target)
        adding = tuple(b for b in target if b not in current)
        return _Assignment(tuple(target) + leaving, adding, leaving)


@dataclass(frozen=True)
class OngoingReassignment:
    """ListPartitionReassignments' view of one partition being moved."""

    replicas: tuple[int, ...]
    adding_replicas: tuple[int, ...]
    removing_replicas: tuple[int, ...]


@dataclass(frozen=True)
class AlterPartitionResult:
    error_code: ErrorCode
    leader: int = NO_LEADER
    leader_epoch: int = -1
    partition_epoch: int = -1
    isr: tuple[int, ...] = ()


class ReplicationControlManager(ControlManager):
    """Partition decisions from the image that ``image()`` returns (see the module docstring)."""

    def __init__(self, config: ControllerConfig, rng: random.Random, image: Callable[[], MetadataImage]) -> None:
        self.config = config
        self._rng = rng   # only for topic ids (see QuorumController)
        super().__init__(image)

    # ---- leader election -------------------------------------------------------------------

    def all_partitions(self):
        for topic in self.image.topics.by_id.values():
            for partition, registration in topic.partitions.items():
                yield topic, partition, registration

    def _acceptable(self, broker_id: int, excluded: set[int]) -> bool:
        registration = self.image.cluster.broker(broker_id)
        return registration is not None and registration.is_active and broker_id not in excluded

    def moves_away_from(self, leaving: set[int], remove_from_isr: bool) -> list:
        """PartitionChangeRecords taking ``leaving`` out of leaderships (and ISRs) everywhere."""
        records = []
        for topic, partition, registration in self.all_partitions():
            if registration.leader in leaving or (remove_from_isr and leaving & set(registration.isr)):
                record = self._change(topic, partition, registration, excluded=leaving,
                                      remove_from_isr=leaving if remove_from_isr else set())
                if record is not None:
                    records.append(record)
        return records

    def elect_for_leaderless(self, returning_broker: int) -> list:
        """On unfence: leaderless partitions whose ISR holds the returning broker get a leader."""
        records = []
        for topic, partition, registration in self.all_partitions():
            if registration.leader == NO_LEADER and returning_broker in registration.isr:
                record = self._change(topic, partition, registration, excluded=set(), extra_ok={returning_broker})
                if record is not None:
                    records.append(record)
        return records

    def _change(self, topic: TopicImage, partition: int, current: PartitionRegistration, excluded: set[int],
                remove_from_isr: set[int] = frozenset(), target_isr: Sequence[int] | None = None,
                extra_ok: set[int] = frozenset(), target: _Assignment | None = None,
                preferred: bool = False, allow_unclean: bool | None = None):
        """One partition's PartitionChangeRecord (Kafka's PartitionChangeBuilder), or None if no-op.

        ``extra_ok`` names brokers to treat as acceptable although the image still shows them
        fenced (the broker being unfenced by the same batch of records).  ``target`` replaces the
        replica set and its reassignment state; ``preferred`` moves leadership to the first replica
        when it may lead.  Any change completes a reassignment whose adding replicas are all in the
        ISR (Kafka's ``completeReassignmentIfNeeded``), before the leader is chosen.
        """
        def ok(b: int) -> bool:
            return b in extra_ok or self._acceptable(b, excluded)

        assignment = target or _Assignment(current.replicas, current.adding_replicas, current.removing_replicas)
        isr = list(current.isr if target_isr is None else target_isr)
        shrunk = [b for b in isr if b not in remove_from_isr]
        if shrunk:
            isr = shrunk  # never empty the ISR: its last member keeps the partition's data claim
        assignment, isr = _complete_reassignment(assignment, isr)
        replicas = assignment.replicas
        leader = current.leader if current.leader in isr and ok(current.leader) else None
        if preferred and replicas and replicas[0] in isr and ok(replicas[0]):
            leader = replicas[0]
        if leader is None:
            leader = next((b for b in replicas if b in isr and ok(b)), None)
        recovery = -1
        unclean = self._unclean_allowed(topic.name) if allow_unclean is None else allow_unclean
        if leader is None and unclean:
            leader = next((b for b in replicas if b not in assignment.removing and ok(b)), None)
            if leader is not None:
                isr, recovery = [leader], LEADER_RECOVERING
        if leader is None:
            leader = NO_LEADER
        isr_changed = tuple(isr) != current.isr
        leader_changed = leader != current.leader
        replicas_changed = tuple(replicas) != current.replicas
        adding_changed = tuple(assignment.adding) != current.adding_replicas
        removing_changed = tuple(assignment.removing) != current.removing_replicas
        if not (isr_changed or leader_changed or replicas_changed or adding_changed or removing_changed):
            return None
        record = partition_change_record.PartitionChangeRecord(
            partition_id=partition, topic_id=topic.topic_id,
            isr=list(isr) if isr_changed else None,
            leader=leader if leader_changed else NO_LEADER_CHANGE,
            replicas=list(replicas) if replicas_changed else None,
            adding_replicas=list(assignment.adding) if adding_changed else None,
            removing_replicas=list(assignment.removing) if removing_changed else None,
            leader_recovery_state=recovery)
        invariant(leader == NO_LEADER or leader in isr, "elected leader must be in the ISR")
        invariant(set(isr) <= set(replicas), "the ISR must stay within the replicas")
        return record

    def _unclean_allowed(self, topic: str) -> bool:
        value = self.image.configs.topic_config(topic).get("unclean.leader.election.enable")
        if value is None:
            return self.config.unclean_leader_election_enable
        return value.strip().lower() == "true"

    # ---- topics ----------------------------------------------------------------------------

    def create_topics(self, topics: Sequence[NewTopic], validate_only: bool = False) -> ControllerResult:
        """CreateTopics: one result per requested topic, records for the valid ones."""
        names = [t.name for t in topics]
        records: list = []
        results = []
        pending_names: set[str] = set()
        partitions_before = self.image.topics.partition_count()
        for topic in topics:
            try:
                if names.count(topic.name) > 1:
                    raise KafkaError(ErrorCode.INVALID_REQUEST, f"topic {topic.name} appears twice in the request")
                assignment = self._validate_new_topic(topic, pending_names,
                                                      partitions_before + len(records))
            except KafkaError as exc:
                results.append(CreateTopicResult(topic.name, exc.error_code, exc.message or None))
                continue
            topic_id = self._new_topic_id()
            pending_names.add(topic.name)
            results.append(CreateTopicResult(topic.name, ErrorCode.NONE, None, topic_id,
                                             len(assignment), len(assignment[0])))
            if not validate_only:
                records += self._topic_records(topic, topic_id, assignment)
        return ControllerResult(tuple(records), tuple(results))

    def _validate_new_topic(self, topic: NewTopic, pending_names: set[str], placement_start: int) -> list[list[int]]:
        validate_topic_name(topic.name)
        if topic.name in self.image.topics.by_name or topic.name in pending_names:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{topic.name}' already exists.")
        collision = _collides(topic.name, list(self.image.topics.by_name) + list(pending_names))
        if collision:
            raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                             f"Topic '{topic.name}' collides with existing topic: {collision}")
        if any(value is None for value in topic.configs.values()):
            raise KafkaError(ErrorCode.INVALID_CONFIG, "a topic config value cannot be null")
        if topic.assignments:
            return self._validate_assignments(topic)
        num_partitions = self.config.num_partitions if topic.num_partitions == -1 else topic.num_partitions
        rf = self.config.default_replication_factor if topic.replication_factor == -1 else topic.replication_factor
        _check_partition_count(num_partitions)
        active = self._active_brokers()
        if rf <= 0 or rf > len(active):
            raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                             f"Replication factor: {rf} larger than available brokers: {len(active)}."
                             if rf > 0 else "Replication factor must be larger than 0.")
        racks = {b: self.image.cluster.brokers[b].rack for b in active}
        return place_replicas(active, racks, num_partitions, rf, placement_start)

    def _validate_assignments(self, topic: NewTopic) -> list[list[int]]:
        if topic.num_partitions != -1 or topic.replication_factor != -1:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             "Both numPartitions or replicationFactor and replicasAssignments were set.")
        indexes = sorted(topic.assignments)
        if indexes != list(range(len(indexes))):
            raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "partitions must be numbered 0..n-1")
        _check_partition_count(len(indexes))
        assignment = [list(topic.assignments[i]) for i in indexes]
        self._check_manual_replicas(assignment)
        return assignment

    def _check_manual_replicas(self, assignment: list[list[int]]) -> None:
        registered = set(self.image.cluster.brokers)
        for index, replicas in enumerate(assignment):
            if not replicas or len(set(replicas)) != len(replicas) or not set(replicas) <= registered:
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                 f"partition {index}: replicas {replicas} must be distinct registered brokers")
            if not any(self._acceptable(b, set()) for b in replicas):
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                 f"partition {index}: none of the replicas {replicas} is unfenced")
        if len({len(r) for r in assignment}) != 1:
            raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "all partitions need the same replica count")

    def _topic_records(self, topic: NewTopic, topic_id: uuid.UUID, assignment: list[list[int]]) -> list:
        records: list = [topic_record.TopicRecord(name=topic.name, topic_id=topic_id)]
        for name in sorted(topic.configs):
            records.append(config_record.ConfigRecord(resource_type=TOPIC_RESOURCE, resource_name=topic.name,
                                                      name=name, value=topic.configs[name]))
        for partition, replicas in enumerate(assignment):
            records.append(self._partition_record(topic_id, partition, replicas))
        return records

    def _partition_record(self, topic_id: uuid.UUID, partition: int, replicas: list[int]):
        isr = [b for b in replicas if self._acceptable(b, set())]
        invariant(bool(isr), "a new partition needs at least one active replica")
        return partition_record.PartitionRecord(
            partition_id=partition, topic_id=topic_id, replicas=list(replicas), isr=isr, leader=isr[0],
            leader_epoch=0, partition_epoch=0)

    def _new_topic_id(self) -> uuid.UUID:
        while True:
            candidate = uuid.UUID(int=self._rng.getrandbits(128), version=4)
            if candidate not in self.image.topics.by_id:
                return candidate

    def _active_brokers(self) -> list[int]:
        return sorted(b for b, reg in self.image.cluster.brokers.items() if reg.is_active)

    def delete_topics(self, names: Sequence[str]) -> ControllerResult:
        """DeleteTopics by name; response: {name: (error_code, message or None)}."""
        records = []
        results: dict[str, tuple[ErrorCode, str | None]] = {}
        for name in names:
            topic = self.image.topics.by_name.get(name)
            if not self.config.delete_topic_enable:
                results[name] = (ErrorCode.TOPIC_DELETION_DISABLED, "delete.topic.enable is false")
            elif topic is None or name in results:
                results[name] = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist.")
            elif name in INTERNAL_TOPICS:
                results[name] = (ErrorCode.INVALID_REQUEST, f"Internal topic {name} cannot be deleted.")
            else:
                records.append(remove_topic_record.RemoveTopicRecord(topic_id=topic.topic_id))
                results[name] = (ErrorCode.NONE, None)
        return ControllerResult(tuple(records), results)

    def create_partitions(self, name: str, count: int,
                          assignments: Sequence[Sequence[int]] | None = None) -> ControllerResult:
        """CreatePartitions: grows ``name`` to ``count`` partitions; response (error, message)."""
        try:
            records = self._new_partition_records(name, count, assignments)
        except KafkaError as exc:
            return ControllerResult((), (exc.error_code, exc.message or None))
        return ControllerResult(tuple(records), (ErrorCode.NONE, None))

    def _new_partition_records(self, name: str, count: int, assignments) -> list:
        topic = self.image.topics.by_name.get(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist.")
        if name in INTERNAL_TOPICS:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"The number of partitions of internal topic {name} cannot change.")
        existing = len(topic.partitions)
        if count <= existing:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS, f"Topic currently has {existing} partitions, which is "
                             f"higher than or equal to the requested {count}.")
        _check_partition_count(count)
        rf = len(topic.partitions[0].replicas)
        if assignments is not None:
            if len(assignments) != count - existing:
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "one assignment is needed per new partition")
            new = [list(r) for r in assignments]
            self._check_manual_replicas(new + [list(topic.partitions[0].replicas)])
        else:
            active = self._active_brokers()
            if rf > len(active):
                raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                                 f"Replication factor: {rf} larger than available brokers: {len(active)}.")
            racks = {b: self.image.cluster.brokers[b].rack for b in active}
            new = place_replicas(active, racks, count - existing, rf, self.image.topics.partition_count())
        return [self._partition_record(topic.topic_id, existing + i, r) for i, r in enumerate(new)]

    # ---- ISR changes from partition leaders ------------------------------------------------

    def alter_partition(self, broker_id: int, broker_epoch: int, topic_id: uuid.UUID, partition: int,
                        leader_epoch: int, partition_epoch: int, new_isr: Sequence[int],
                        new_isr_broker_epochs: Mapping[int, int] | None = None) -> ControllerResult:
        """AlterPartition (KIP-497), validated in Kafka's order (``validateAlterPartitionData``).

        ``new_isr_broker_epochs`` (AlterPartition v3's ``newIsrWithEpochs``, KIP-903): the broker epoch each
        follower fetched with; a member whose epoch is not the one registered now (it restarted, perhaps with
        an empty disk, since the leader saw it caught up) is INELIGIBLE_REPLICA.  -1 means unknown.
        """
        registration = self.image.cluster.broker(broker_id)
        if registration is None or registration.broker_epoch != broker_epoch:
            return ControllerResult((), AlterPartitionResult(ErrorCode.STALE_BROKER_EPOCH))
        topic = self.image.topics.by_id.get(topic_id)
        if topic is None:
            return ControllerResult((), AlterPartitionResult(ErrorCode.UNKNOWN_TOPIC_ID))
        current = topic.partitions.get(partition)
        if current is None:
            return ControllerResult((), AlterPartitionResult(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
        error = _alter_partition_error(current, broker_id, leader_epoch, partition_epoch, new_isr)
        if error == ErrorCode.NONE and any(not self._acceptable(b, set()) for b in new_isr if b not in current.isr):
            error = ErrorCode.INELIGIBLE_REPLICA
        if error == ErrorCode.NONE and new_isr_broker_epochs and self._stale_broker_epoch(new_isr_broker_epochs):
            error = ErrorCode.INELIGIBLE_REPLICA
        if error != ErrorCode.NONE:
            return ControllerResult((), AlterPartitionResult(error))
        record = self._change(topic, partition, current, excluded=set(), target_isr=list(new_isr))
        if record is None:
            return ControllerResult((), _result_from(current))
        return ControllerResult((record,), _result_from(merge_partition_change(current, record)))

    def _stale_broker_epoch(self, broker_epochs: Mapping[int, int]) -> bool:
        for broker_id, broker_epoch in broker_epochs.items():
            registration = self.image.cluster.broker(broker_id)
            if broker_epoch >= 0 and (registration is None or registration.broker_epoch != broker_epoch):
                return True
        return False

    # ---- reassignment and leader election ---------------------------------------------------

    def alter_partition_reassignments(
            self, requests: Sequence[tuple[str, int, Sequence[int] | None]]) -> ControllerResult:
        """AlterPartitionReassignments (KIP-455): (topic, partition, target replicas or None to cancel).

        Response: {(topic, partition): (error_code, message or None)}.  Starting sets replicas to
        target + leaving, adding = target - current, removing = current - target; the move completes
        (here or on a later ISR change) once every adding replica is in the ISR.
        """
        records: list = []
        results: dict[tuple[str, int], tuple[ErrorCode, str | None]] = {}
        seen: set[tuple[str, int]] = set()
        for topic_name, partition, target in requests:
            try:
                if (topic_name, partition) in seen:
                    raise KafkaError(ErrorCode.INVALID_REQUEST,
                                     f"partition {topic_name}-{partition} appears twice in the request")
                seen.add((topic_name, partition))
                record = self._reassignment_record(topic_name, partition, target)
            except KafkaError as exc:
                results[(topic_name, partition)] = (exc.error_code, exc.message or None)
                continue
            results[(topic_name, partition)] = (ErrorCode.NONE, None)
            if record is not None:
                records.append(record)
        return ControllerResult(tuple(records), results)

    def _reassignment_record(self, topic_name: str, partition: int, target: Sequence[int] | None):
        topic = self.image.topics.by_name.get(topic_name)
        current = None if topic is None else topic.partitions.get(partition)
        if current is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"Unable to find partition {topic_name}-{partition}.")
        if target is None:
            return self._cancel_reassignment(topic, partition, current)
        target = list(target)
        if not target:
            raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "The manual partition assignment is empty.")
        if len(set(target)) != len(target):
            raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                             f"All brokers specified in the manual partition assignment for partition "
                             f"{partition} must be unique.")
        for broker_id in target:
            if self.image.cluster.broker(broker_id) is None:
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                 f"The manual partition assignment includes broker {broker_id}, but no such "
                                 f"broker is registered.")
        assignment = _Assignment.start(current.replicas, target)
        return self._change(topic, partition, current, excluded=set(), target=assignment)

    def _cancel_reassignment(self, topic: TopicImage, partition: int, current: PartitionRegistration):
        """Kafka's PartitionReassignmentRevert: back to the original replicas, adding ones leave."""
        if not current.is_reassigning():
            raise KafkaError(ErrorCode.NO_REASSIGNMENT_IN_PROGRESS,
                             f"No ongoing reassignment for partition {topic.name}-{partition}.")
        original = tuple(b for b in current.replicas if b not in current.adding_replicas)
        isr = [b for b in current.isr if b not in current.adding_replicas]
        if not isr and not self._unclean_allowed(topic.name):
            raise KafkaError(ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE,
                             f"Unable to revert partition assignment for {topic.name}-{partition} because it "
                             f"would require an unclean leader election.")
        return self._change(topic, partition, current, excluded=set(), target_isr=isr,
                            target=_Assignment(original))

    def list_partition_reassignments(
            self, partitions: Sequence[tuple[str, int]] | None = None) -> dict[tuple[str, int], OngoingReassignment]:
        """ListPartitionReassignments: the partitions being moved (all, or those of ``partitions``);
        unknown or idle partitions are left out, as Kafka does."""
        wanted = None if partitions is None else set(partitions)
        found = {}
        for topic, partition, registration in self.all_partitions():
            key = (topic.name, partition)
            if registration.is_reassigning() and (wanted is None or key in wanted):
                found[key] = OngoingReassignment(registration.replicas, registration.adding_replicas,
                                                 registration.removing_replicas)
        return found

    def elect_leaders(self, election_type: int,
                      partitions: Sequence[tuple[str, int]] | None = None) -> ControllerResult:
        """ElectLeaders (KIP-460).  Response: {(topic, partition): (error_code, message or None)}.

        PREFERRED moves leadership to the first replica if it is in the ISR and active;
        UNCLEAN elects a leader for a leaderless partition, outside the ISR if need be.
        With ``partitions`` None every partition is considered and only elections made are reported.
        """
        elect_all = partitions is None
        if elect_all:
            partitions = [(t.name, p) for t, p, _ in self.all_partitions()]
        records: list = []
        results: dict[tuple[str, int], tuple[ErrorCode, str | None]] = {}
        for topic_name, partition in partitions:
            error, message, record = self._election(election_type, topic_name, partition)
            if record is not None:
                records.append(record)
            if not elect_all or record is not None:
                results[(topic_name, partition)] = (error, message)
        return ControllerResult(tuple(records), results)

    def elect_preferred_leaders(self, partitions: Sequence[tuple[str, int]] | None = None) -> ControllerResult:
        return self.elect_leaders(ELECTION_PREFERRED, partitions)

    def _election(self, election_type: int, topic_name: str, partition: int):
        topic = self.image.topics.by_name.get(topic_name)
        current = None if topic is None else topic.partitions.get(partition)
        if current is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {topic_name}-{partition}.", None
        if election_type == ELECTION_PREFERRED:
            preferred = current.replicas[0]
            if current.leader == preferred:
                return ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition.", None
            record = self._change(topic, partition, current, excluded=set(), preferred=True)
            if record is None or record.leader != preferred:
                return (ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
                        f"Failed to elect leader for {topic_name}-{partition}: the preferred replica "
                        f"{preferred} is not in the ISR or not available.", None)
            return ErrorCode.NONE, None, record
        if election_type == ELECTION_UNCLEAN:
            if current.has_leader():
                return ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition.", None
            record = self._change(topic, partition, current, excluded=set(), allow_unclean=True)
            if record is None or record.leader in (NO_LEADER, NO_LEADER_CHANGE):
                return (ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE,
                        f"Failed to elect leader for {topic_name}-{partition}: no replica is available.", None)
            return ErrorCode.NONE, None, record
        return ErrorCode.INVALID_REQUEST, f"Unknown election type {election_type}.", None

    def rebalance_leaders(self, imbalance_percentage: int) -> ControllerResult:
        """auto.leader.rebalance.enable's periodic check (the ZooKeeper controller's
        ``checkAndTriggerAutoLeaderRebalance``): for each broker, the share of partitions it prefers
        (first replica) but does not lead; above ``leader.imbalance.per.broker.percentage`` its
        partitions whose preferred replica may lead get a preferred election.  Response: the
        (topic, partition) moved."""
        preferred_of: dict[int, list] = {}
        for topic, partition, registration in self.all_partitions():
            # As Kafka: a partition being reassigned is left alone; its leader moves when the move completes.
            if registration.replicas and not registration.is_reassigning():
                preferred_of.setdefault(registration.replicas[0], []).append((topic, partition, registration))
        records = []
        moved = []
        for broker_id in sorted(preferred_of):
            owned = preferred_of[broker_id]
            not_leading = [entry for entry in owned if entry[2].leader != broker_id]
            if not not_leading or len(not_leading) * 100 <= imbalance_percentage * len(owned):
                continue
            for topic, partition, registration in sorted(not_leading, key=lambda e: (e[0].name, e[1])):
                record = self._change(topic, partition, registration, excluded=set(), preferred=True)
                if record is not None and record.leader == broker_id:
                    records.append(record)
                    moved.append((topic.name, partition))
        return ControllerResult(tuple(records), tuple(moved))


def _alter_partition_error(current: PartitionRegistration, broker_id: int, leader_epoch: int,
                           partition_epoch: int, new_isr: Sequence[int]) -> ErrorCode:
    if leader_epoch > current.leader_epoch or partition_epoch > current.partition_epoch:
        return ErrorCode.NOT_CONTROLLER  # the sender knows a newer state than we do: we are stale
    if leader_epoch < current.leader_epoch:
        return ErrorCode.FENCED_LEADER_EPOCH
    if broker_id != current.leader:
        return ErrorCode.INVALID_REQUEST
    if partition_epoch < current.partition_epoch:
        return ErrorCode.INVALID_UPDATE_VERSION
    if (not set(new_isr) <= set(current.replicas) or broker_id not in new_isr
            or len(set(new_isr)) != len(new_isr)):
        return ErrorCode.INVALID_REQUEST
    return ErrorCode.NONE


def _complete_reassignment(assignment: _Assignment, isr: list[int]) -> tuple[_Assignment, list[int]]:
    """Kafka's ``maybeCompleteReassignment``: once every adding replica is in the ISR, the removing
    ones go (from replicas and ISR), unless that would leave the ISR empty."""
    if not (assignment.adding or assignment.removing) or not set(assignment.adding) <= set(isr):
        return assignment, isr
    remaining_isr = [b for b in isr if b not in assignment.removing]
    if not remaining_isr:
        return assignment, isr
    return _Assignment(tuple(b for b in assignment.replicas if b not in assignment.removing)), remaining_isr


def _result_from(registration: PartitionRegistration) -> AlterPartitionResult:
    return AlterPartitionResult(ErrorCode.NONE, registration.leader, registration.leader_epoch,
                                registration.partition_epoch, registration.isr)


def _check_partition_count(num_partitions: int) -> None:
    if num_partitions <= 0 or num_partitions > MAX_PARTITIONS_PER_TOPIC:
        raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                         f"Number of partitions must be in [1, {MAX_PARTITIONS_PER_TOPIC}], got {num_partitions}.")


def _collides(name: str, existing: Iterable[str]) -> str | None:
    """Kafka rejects names equal to an existing one once '.' and '_' are identified (metric names)."""
    folded = name.replace(".", "_")
    for other in existing:
        if other != name and other.replace(".", "_") == folded:
            return other
    return None
