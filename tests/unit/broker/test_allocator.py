"""cluster/broker/allocator.py: glibc accepts the malloc thresholds; elsewhere the call changes nothing."""

from __future__ import annotations

import platform

import pytest

from cluster.broker import allocator


def test_glibc_accepts_the_thresholds():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip(f"mallopt thresholds are glibc's; this libc is {platform.libc_ver()!r}")
    assert allocator.tune_allocator() is True


def test_without_a_c_library_nothing_is_changed(monkeypatch):
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    assert allocator.tune_allocator() is False


def test_a_refused_threshold_is_reported(monkeypatch):
    class FakeLibc:
        @staticmethod
        def mallopt(param, value):
            return 0   # mallopt's "refused"

    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: FakeLibc())
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: "libc.so.6")
    assert allocator.tune_allocator() is False
