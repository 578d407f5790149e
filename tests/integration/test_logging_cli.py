"""``kraftpy broker --log-format json --log-level ...``: a real broker process writes one JSON object per line,
with levels per module; the config key (``logging.format`` via KRAFTPY_LOGGING_FORMAT) does the same; a bad
level spec stops the broker at start-up with exit code 2 and a message naming it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from broker_process import REPO_ROOT

pytestmark = [pytest.mark.timeout(60)]


def broker_lines(process) -> list[str]:
    text = process.log_since(0, max_bytes=1_000_000)
    return [line for line in text.splitlines() if line.strip() and not line.startswith("=== harness")]


def test_json_logs_with_levels_per_module(broker_factory):
    process = broker_factory("json-logs", extra_args=["--log-format", "json",
                                                      "--log-level", "root=WARNING,cluster.broker=INFO"])
    process.stop()
    events = [json.loads(line) for line in broker_lines(process)]   # every line is one JSON object
    assert events, "the broker logged nothing"
    for event in events:
        assert {"ts", "level", "logger", "message"} <= set(event), event
        if event["level"] in ("INFO", "DEBUG"):
            assert event["logger"].startswith("cluster.broker"), event   # root is WARNING
    messages = [event["message"] for event in events]
    assert any(message.startswith("kraftpy broker started") for message in messages)
    assert any(message == "broker stopped" for message in messages)


def test_the_config_key_selects_json_too(broker_factory):
    process = broker_factory("json-logs-env", env={"KRAFTPY_LOGGING_FORMAT": "json"})
    process.stop()
    lines = broker_lines(process)
    assert lines and all(json.loads(line)["logger"] for line in lines)


def test_a_bad_level_spec_fails_fast(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cluster", "broker", "--override", f"log.dirs={tmp_path}",
                             "--log-level", "cluster.raft=LOUD"], capture_output=True, text=True, timeout=30,
                            cwd=str(REPO_ROOT))
    assert result.returncode == 2
    assert "LOUD" in result.stderr
