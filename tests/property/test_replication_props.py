"""Property tests of the replication state machines against a model where every log is a Python list.

1. A stateful test drives one leader (PartitionLeaderState), two followers (FollowerFetchState) and a simulated
   controller through random interleavings of produces, flushes, fetches, follower crashes that lose unflushed
   data, time passing, ISR shrink/expand proposals and controller answers that are accepted, refused, delayed,
   duplicated or overtaken by metadata.  After every step: the HW never decreases; it is at most the fsynced
   log end of every maximal-ISR member (and of every member the controller thinks is in the ISR); the leader is
   in the ISR and the ISR within the replicas; everything below the HW is on every such member's fsynced log;
   every acknowledged acks=all write is below the HW.
2. Epoch-based truncation: for any pair of logs obeying log matching, the follower converges to exactly the
   common prefix, and it raises (fatal) iff its high watermark is above that prefix.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cluster.core.errors import ErrorCode, KafkaError
from cluster.replication.follower import FetchAction, FollowerFetchState, TruncationBelowHighWatermarkError
from cluster.replication.leader import PartitionLeaderState, find_diverging_epoch

LEADER, FOLLOWERS = 0, (1, 2)
REPLICAS = (LEADER, *FOLLOWERS)
LEADER_EPOCH = 4
LAG_MS = 500


class ListLog:
    """A replica's log: one (epoch, value) per offset; ``durable`` is the fsynced prefix length."""

    def __init__(self, entries=()):
        self.entries = list(entries)
        self.durable = len(self.entries)
        self.log_start_offset = 0

    @property
    def log_end_offset(self):
        return len(self.entries)

    @property
    def durable_log_end_offset(self):
        return self.durable

    @property
    def latest_epoch(self):
        return self.entries[-1][0] if self.entries else -1

    def end_offset_for_epoch(self, leader_epoch):
        epochs = [e for e, _ in self.entries]
        starts = [(e, i) for i, e in enumerate(epochs) if i == 0 or epochs[i - 1] != e]
        if leader_epoch == -1 or not starts:
            return -1, -1
        if leader_epoch == starts[-1][0]:
            return leader_epoch, len(epochs)
        higher = [s for s in starts if s[0] > leader_epoch]
        if not higher:
            return -1, -1
        lower = [s for s in starts if s[0] <= leader_epoch]
        return (lower[-1][0] if lower else leader_epoch), higher[0][1]

    def truncate_to(self, offset):
        del self.entries[offset:]
        self.durable = min(self.durable, offset)


class ReplicationModel(RuleBasedStateMachine):
    @initialize(isr=st.sampled_from([REPLICAS, (0, 1), (0, 2), (0,)]), min_isr=st.integers(1, 3),
                strict=st.booleans())
    def start(self, isr, min_isr, strict):
        self.now_ms = 1_000
        self.next_value = 0
        self.leader_log = ListLog()
        self.leader = PartitionLeaderState("t", 0, LEADER, LEADER_EPOCH, 0, REPLICAS, isr, 0, LAG_MS, min_isr,
                                           now_ms=self.now_ms, strict_min_isr=strict)
        self.logs = {f: ListLog() for f in FOLLOWERS}
        self.fetchers = {f: FollowerFetchState("t", 0, f, LEADER, LEADER_EPOCH) for f in FOLLOWERS}
        self.controller_isr = isr
        self.controller_partition_epoch = 0
        self.to_controller = []     # AlterPartition requests sent, not yet handled
        self.to_leader = []         # (request, response kwargs) not yet delivered
        self.waiting_acks = []      # required offsets of parked acks=all produces
        self.acked = []
        self.last_high_watermark = 0

    # -- the leader ------------------------------------------------------------------------------------------
    @rule(count=st.integers(1, 4), acks_all=st.booleans())
    def produce(self, count, acks_all):
        if acks_all:
            try:
                self.leader.check_append_allowed(-1)
            except KafkaError as error:
                assert error.error_code == ErrorCode.NOT_ENOUGH_REPLICAS and self.leader.is_under_min_isr
                return
        for _ in range(count):
            self.leader_log.entries.append((LEADER_EPOCH, self.next_value))
            self.next_value += 1
        self.leader.on_local_append(self.leader_log.log_end_offset, self.now_ms)
        if acks_all:
            self.waiting_acks.append(self.leader_log.log_end_offset)

    @rule()
    def leader_flush(self):
        self.leader_log.durable = self.leader_log.log_end_offset
        self.leader.on_local_flushed(self.leader_log.durable, self.now_ms)

    @rule(ms=st.sampled_from([1, 50, 200, LAG_MS, 2 * LAG_MS]))
    def time_passes(self, ms):
        self.now_ms += ms

    @rule()
    def shrink_check(self):
        change = self.leader.maybe_shrink_isr(self.now_ms)
        if change is not None:
            self.to_controller.append(change)

    @rule()
    def complete_acks(self):
        still = []
        for required in self.waiting_acks:
            check = self.leader.check_acks_all(required)
            if not check.done:
                still.append(required)
            elif check.error_code == ErrorCode.NONE:
                assert self.leader.high_watermark >= required
                self.acked.append(required)
            else:
                assert check.error_code == ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        self.waiting_acks = still

    # -- followers ----------------------------------------------------------------------------------------------
    @rule(f=st.sampled_from(FOLLOWERS), max_records=st.integers(1, 6))
    def follower_fetch(self, f, max_records):
        log, fetcher = self.logs[f], self.fetchers[f]
        request = fetcher.next_fetch(self.now_ms, log)
        if request is None:
            return
        result = self.leader.on_follower_fetch(
            f, request.fetch_offset, self.now_ms, self.leader_log.log_end_offset,
            last_fetched_epoch=request.last_fetched_epoch,
            leader_epoch_end_offset=self.leader_log.end_offset_for_epoch(request.last_fetched_epoch),
            current_leader_epoch=request.current_leader_epoch)
        assert result.diverging_epoch is None  # followers only ever copy this leader's log
        change = self.leader.maybe_expand_isr(f)
        if change is not None:
            self.to_controller.append(change)
        outcome = fetcher.on_fetch_response(request, self.now_ms, log, high_watermark=result.high_watermark)
        assert outcome.action is FetchAction.APPEND
        log.entries.extend(self.leader_log.entries[request.fetch_offset:request.fetch_offset + max_records])
        fetcher.on_records_appended(log)

    @rule(f=st.sampled_from(FOLLOWERS))
    def follower_flush(self, f):
        self.logs[f].durable = self.logs[f].log_end_offset

    @rule(f=st.sampled_from(FOLLOWERS))
    def follower_crash(self, f):
        """Power loss: the unflushed tail disappears; the fetcher restarts from its checkpointed HW."""
        log = self.logs[f]
        log.truncate_to(log.durable)
        old = self.fetchers[f]
        self.fetchers[f] = FollowerFetchState("t", 0, f, LEADER, LEADER_EPOCH,
                                              high_watermark=min(old.high_watermark, log.log_end_offset))

    # -- controller -------------------------------------------------------------------------------------------
    @precondition(lambda self: self.to_controller)
    @rule(index=st.integers(0, 3), accept=st.booleans(), deliver_now=st.booleans())
    def controller_handles(self, index, accept, deliver_now):
        request = self.to_controller.pop(index % len(self.to_controller))
        if request.partition_epoch != self.controller_partition_epoch:
            answer = {"error_code": ErrorCode.INVALID_UPDATE_VERSION}
        elif not accept:
            answer = {"error_code": ErrorCode.INELIGIBLE_REPLICA}
        else:
            self.controller_isr = request.new_isr
            self.controller_partition_epoch += 1
            answer = {"error_code": ErrorCode.NONE, "leader_epoch": LEADER_EPOCH,
                      "partition_epoch": self.controller_partition_epoch, "isr": request.new_isr}
        self.to_leader.append((request, answer))
        if deliver_now:
            self.deliver_response(len(self.to_leader) - 1, duplicate=False)

    @precondition(lambda self: self.to_leader)
    @rule(index=st.integers(0, 3), duplicate=st.booleans())
    def deliver_response(self, index, duplicate):
        index %= len(self.to_leader)
        request, answer = self.to_leader[index] if duplicate else self.to_leader.pop(index)
        self.leader.on_alter_partition_response(request, **answer)

    @rule()
    def metadata_arrives(self):
        self.leader.on_partition_metadata(LEADER_EPOCH, self.controller_partition_epoch, REPLICAS,
                                          self.controller_isr, self.now_ms)

    # -- invariants -------------------------------------------------------------------------------------------
    def durable_end(self, replica):
        return self.leader_log.durable if replica == LEADER else self.logs[replica].durable

    def durable_entries(self, replica):
        log = self.leader_log if replica == LEADER else self.logs[replica]
        return log.entries[:log.durable]

    @invariant()
    def replication_invariants(self):
        leader = self.leader
        leader.check_invariants()
        hw = leader.high_watermark
        assert hw >= self.last_high_watermark, "high watermark went backwards"
        self.last_high_watermark = hw
        assert LEADER in leader.isr and set(leader.isr) <= set(REPLICAS)
        assert LEADER in self.controller_isr
        members = set(leader.maximal_isr) | set(self.controller_isr)
        committed = self.leader_log.entries[:hw]
        for replica in members:
            assert self.durable_end(replica) >= hw, f"replica {replica} lacks committed offsets durably"
            assert self.durable_entries(replica)[:hw] == committed
        for required in self.acked:
            assert required <= hw
        for fetcher in self.fetchers.values():
            assert fetcher.high_watermark <= hw


TestReplicationModel = ReplicationModel.TestCase
TestReplicationModel.settings = settings(max_examples=300, stateful_step_count=80, deadline=None)


# -- epoch-based truncation --------------------------------------------------------------------------------------
@st.composite
def diverged_logs(draw):
    """(common prefix, leader log, follower log) obeying log matching: an epoch's entries come from one leader,
    so after the common prefix the two suffixes share no epoch (the prefix's last epoch may go on in one)."""
    prefix = sorted(draw(st.lists(st.integers(0, 3), max_size=6)))
    last = prefix[-1] if prefix else -1
    pool = list(range(last + 1, last + 8))
    owners = draw(st.lists(st.sampled_from("LF-"), min_size=len(pool), max_size=len(pool)))
    leader_epochs = [e for e, o in zip(pool, owners, strict=True) if o == "L"]
    follower_epochs = [e for e, o in zip(pool, owners, strict=True) if o == "F"]
    if not leader_epochs or (follower_epochs and max(follower_epochs) > max(leader_epochs)):
        leader_epochs.append(last + 8)   # the current leader holds the newest epoch
    continuation = draw(st.sampled_from("LF-")) if prefix else "-"

    def suffix(epochs, owner):
        out = [last] * draw(st.integers(1, 3)) if continuation == owner else []
        for e in epochs:
            out += [e] * draw(st.integers(1, 3))
        return out

    leader = prefix + suffix(leader_epochs, "L")
    follower = prefix + suffix(follower_epochs, "F")
    return prefix, leader, follower


@settings(max_examples=300, deadline=None)
@given(diverged_logs(), st.data())
def test_truncation_converges_to_the_common_prefix_and_never_below_the_high_watermark(logs, data):
    prefix, leader_epochs, follower_epochs = logs
    leader_log = ListLog([(e, ("L", i)) for i, e in enumerate(leader_epochs)])
    follower_log = ListLog([(e, ("L", i)) if i < len(prefix) else (e, ("F", i))
                            for i, e in enumerate(follower_epochs)])
    high_watermark = data.draw(st.integers(0, len(follower_epochs)))
    fetcher = FollowerFetchState("t", 0, 2, 1, max(leader_epochs), high_watermark=high_watermark)
    must_truncate = len(follower_epochs) > len(prefix)
    try:
        for now_ms in range(20):
            request = fetcher.next_fetch(now_ms, follower_log)
            diverging = None
            if request.last_fetched_epoch != -1:
                diverging = find_diverging_epoch(request.last_fetched_epoch, request.fetch_offset,
                                                 leader_log.end_offset_for_epoch(request.last_fetched_epoch))
            outcome = fetcher.on_fetch_response(request, now_ms, follower_log,
                                                high_watermark=len(prefix), diverging_epoch=diverging)
            if outcome.action is FetchAction.APPEND:
                break
            assert outcome.action is FetchAction.TRUNCATE
            assert outcome.offset >= len(prefix), "truncated into the common prefix"
            follower_log.truncate_to(outcome.offset)
        else:
            raise AssertionError("truncation did not converge")
    except TruncationBelowHighWatermarkError:
        assert must_truncate and high_watermark > len(prefix)
        return
    assert not (must_truncate and high_watermark > len(prefix)), "truncation below the HW was not caught"
    assert follower_log.entries == leader_log.entries[:len(prefix)] or not must_truncate
    assert follower_log.entries == leader_log.entries[:follower_log.log_end_offset]
    assert follower_log.log_end_offset == (len(prefix) if must_truncate else len(follower_epochs))
