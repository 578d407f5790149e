"""Structured logs: one line per event, JSON on request with ts/level/logger/message/exception, levels per module."""

from __future__ import annotations

import io
import json
import logging

import pytest

from cluster.observability.logs import configure_logging, parse_level_spec


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    touched = ["cluster.raft", "cluster.transport", "cluster"]
    levels = {name: logging.getLogger(name).level for name in touched}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def test_parse_level_spec_bare_level_and_per_module():
    assert parse_level_spec("DEBUG") == {"": logging.DEBUG}
    assert parse_level_spec("cluster.raft=DEBUG, root=warning") == {"cluster.raft": logging.DEBUG,
                                                                    "": logging.WARNING}


@pytest.mark.parametrize("spec", ["cluster.raft=LOUD", "=DEBUG", "NOPE"])
def test_parse_level_spec_rejects_bad_entries(spec):
    with pytest.raises(ValueError):
        parse_level_spec(spec)


def test_json_lines_have_the_fields_and_exception_text_on_one_line():
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    logging.getLogger("cluster.broker").info("started node %d", 3)
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        logging.getLogger("cluster.storage").exception("flush failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["logger"] == "cluster.broker" and first["message"] == "started node 3"
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert "exception" not in first
    assert second["level"] == "ERROR" and second["message"] == "flush failed"
    assert "RuntimeError: disk on fire" in second["exception"] and "Traceback" in second["exception"]


def test_text_lines_keep_a_traceback_on_one_line():
    stream = io.StringIO()
    configure_logging("INFO", "text", stream=stream)
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("cluster.x").exception("oops")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert " ERROR cluster.x: oops" in lines[0] and "ValueError: bad" in lines[0]


def test_levels_per_module():
    stream = io.StringIO()
    configure_logging("cluster.raft=DEBUG,root=WARNING", "json", stream=stream)
    logging.getLogger("cluster.raft").debug("vote granted")
    logging.getLogger("cluster.raft.state").debug("child inherits")
    logging.getLogger("cluster.transport").info("hidden: root is WARNING")
    logging.getLogger("cluster.transport").warning("shown")
    messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == ["vote granted", "child inherits", "shown"]


def test_configure_twice_keeps_one_handler():
    stream = io.StringIO()
    configure_logging("INFO", "text", stream=io.StringIO())
    configure_logging("INFO", "json", stream=stream)
    logging.getLogger("cluster").info("once")
    assert len(stream.getvalue().splitlines()) == 1


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="log format"):
        configure_logging("INFO", "xml")
