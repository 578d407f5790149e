"""The high watermark checkpoint round-trips, and a damaged file never stops a broker (it starts from 0)."""

from __future__ import annotations

from cluster.storage.hw_checkpoint import CHECKPOINT_FILE, read_high_watermarks, write_high_watermarks


def test_round_trip(tmp_path):
    entries = {("orders", 0): 42, ("orders", 1): 0, ("__consumer_offsets", 17): 9_000_000_000}
    write_high_watermarks(str(tmp_path), entries)
    assert read_high_watermarks(str(tmp_path)) == entries
    assert (tmp_path / CHECKPOINT_FILE).read_text().splitlines()[:2] == ["0", "3"]


def test_missing_file_means_no_hints(tmp_path):
    assert read_high_watermarks(str(tmp_path)) == {}


def test_malformed_files_are_ignored(tmp_path, caplog):
    for body in ["", "1\n0\n", "0\n2\norders 0 5\n", "0\n1\norders zero 5\n", "garbage"]:
        (tmp_path / CHECKPOINT_FILE).write_text(body)
        assert read_high_watermarks(str(tmp_path)) == {}, body
    assert "malformed" in caplog.text


def test_rewrite_replaces_old_entries(tmp_path):
    write_high_watermarks(str(tmp_path), {("a", 0): 1})
    write_high_watermarks(str(tmp_path), {("b", 0): 2})
    assert read_high_watermarks(str(tmp_path)) == {("b", 0): 2}
    assert not (tmp_path / (CHECKPOINT_FILE + ".tmp")).exists()
