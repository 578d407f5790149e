"""Differential property tests of the quorum arithmetic against deliberately naive definitions."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from cluster.raft import quorum

offsets = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=7)


@given(offsets)
def test_majority_end_offset_is_the_largest_offset_a_majority_holds(ends):
    naive = max(o for o in range(0, 51) if sum(1 for e in ends if e >= o) >= quorum.majority_size(len(ends)))
    assert quorum.majority_end_offset(ends) == naive


@given(offsets)
def test_any_two_majorities_intersect(ends):
    voters = range(len(ends))
    majority = quorum.majority_size(len(ends))
    for left, right in itertools.product(itertools.combinations(voters, majority), repeat=2):
        assert set(left) & set(right)


@given(st.integers(0, 9), st.integers(0, 50), st.integers(0, 9), st.integers(0, 50))
def test_log_comparison_is_a_total_preorder_epoch_first(a_epoch, a_end, b_epoch, b_end):
    a_ok = quorum.is_log_up_to_date(a_epoch, a_end, b_epoch, b_end)
    b_ok = quorum.is_log_up_to_date(b_epoch, b_end, a_epoch, a_end)
    assert a_ok or b_ok
    if a_epoch != b_epoch:
        assert a_ok == (a_epoch > b_epoch)
