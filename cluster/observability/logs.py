"""The broker's log lines: one line per event, as text for people or JSON for log shippers, levels per module.

Operators grep a terminal and ship container logs to Loki/Elasticsearch; both want one event per line, so a
traceback never spills over several lines (JSON carries it in an ``exception`` field, text escapes its newlines).
Levels are set per logger with a spec such as ``cluster.raft=DEBUG,root=INFO`` (a bare ``DEBUG`` is the root
level), the way log4j's per-category levels let a Kafka operator debug one subsystem without drowning in the rest.

``configure_logging`` replaces the root logger's handlers, so it may be called again (tests do).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

LOG_FORMATS = ("text", "json")
_HANDLER_NAME = "kraftpy-structured"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601 with ms), level, logger, message, and exception text."""

    def format(self, record: logging.LogRecord) -> str:
        event = {
            "ts": _iso_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            event["exception"] = record.exc_text
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return json.dumps(event, ensure_ascii=False, default=str)


class OneLineTextFormatter(logging.Formatter):
    """``ts LEVEL logger: message``, with a traceback's newlines escaped so the event stays on one line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (stdlib name)
        return _iso_ms(record.created)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\\n")


def _iso_ms(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_level_spec(spec: str) -> dict[str, int]:
    """``"cluster.raft=DEBUG,root=INFO"`` -> {"cluster.raft": 10, "": 20}; a bare level sets the root.

    Raises ValueError naming the bad entry (an unknown level or an empty logger name).
    """
    levels: dict[str, int] = {}
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        logger_name, _, level_name = entry.rpartition("=")
        logger_name = logger_name.strip()
        if "=" in entry and not logger_name:
            raise ValueError(f"log level entry {entry!r} has no logger name")
        level = logging.getLevelName(level_name.strip().upper())
        if not isinstance(level, int):
            raise ValueError(f"unknown log level {level_name.strip()!r} in {entry!r}")
        levels["" if logger_name in ("", "root") else logger_name] = level
    return levels


def configure_logging(level_spec: str = "INFO", log_format: str = "text", stream: TextIO | None = None) -> None:
    """Installs one handler on the root logger writing ``log_format`` lines, and the levels of ``level_spec``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    levels = parse_level_spec(level_spec)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else OneLineTextFormatter())
    root.addHandler(handler)
    root.setLevel(levels.pop("", logging.INFO))
    for logger_name, level in levels.items():
        logging.getLogger(logger_name).setLevel(level)
