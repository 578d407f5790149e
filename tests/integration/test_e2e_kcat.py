"""Debian's kcat (librdkafka 2.0.2) against the broker: an old librdkafka is a compatibility check of its own.

librdkafka 2.0.2 misparses some ApiVersions v3 replies, silently skips compression when Produce v0 is
not advertised, and uses ListOffsets <= v2 (kafka-protocol.md §2.3, §7).  Covered: produce with every
codec and keys (`-K:`), consume with a format string, metadata listing (`-L`, `-L -J`), relative
offsets from the end (`-o -2`), and offsets by timestamp (`-o s@<ts>`).
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
from client_adapters import CODECS, KCAT, Msg, create_topic, kcat_available, produce, unique_topic
from log_segments import codecs_on_disk

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not kcat_available(), reason="/usr/bin/kcat is not installed (apt-get install kcat)"),
]


def kcat(*args: str, stdin: bytes | None = None, timeout_s: float = 30) -> str:
    proc = subprocess.run([KCAT, *args], input=stdin, capture_output=True, timeout=timeout_s)
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}: {stderr[-2000:]}"
    return proc.stdout.decode()


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_produce_and_consume_with_format(broker, codec):
    topic = unique_topic(f"kcat-{codec}")
    lines = [f"key{i}:line {i} " + "x" * (i % 50) for i in range(100)] + ["no key here"]
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-K", ":", "-z", codec, "-X", "linger.ms=5",
         stdin=("\n".join(lines) + "\n").encode())
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%k %s %o\n")
    got = out.splitlines()
    expected = [f"key{i} line {i} " + "x" * (i % 50) + f" {i}" for i in range(100)] + [" no key here 100"]
    assert got == expected, f"first mismatch: {next(((g, e) for g, e in zip(got, expected, strict=False) if g != e), None)}"
    found = codecs_on_disk(broker.partition_dir(topic, 0))
    if codec == "none":
        assert found == {"none"}, found
    else:
        assert codec in found, (f"kcat -z {codec}: batches on disk are {found} (librdkafka 2.0.2 skips "
                                f"compression unless Produce v0 is advertised, and lz4 unless FindCoordinator v0 is)")


def test_kcat_metadata_list(broker):
    topic = unique_topic("kcat-meta")
    create_topic(broker.bootstrap, topic, 3)
    plain = kcat("-b", broker.bootstrap, "-L", "-t", topic)
    assert f'topic "{topic}" with 3 partitions:' in plain, plain
    for partition in range(3):
        assert f"partition {partition}, leader 1, replicas: 1, isrs: 1" in plain, plain
    assert f"broker 1 at {broker.bootstrap}" in plain, plain

    listing = json.loads(kcat("-b", broker.bootstrap, "-L", "-J"))
    assert [b["id"] for b in listing["brokers"]] == [1]
    assert listing["brokers"][0]["name"] == broker.bootstrap
    topics = {t["topic"]: t for t in listing["topics"]}
    assert topic in topics, sorted(topics)
    partitions = sorted(topics[topic]["partitions"], key=lambda p: p["partition"])
    assert [(p["partition"], p["leader"]) for p in partitions] == [(0, 1), (1, 1), (2, 1)]


def test_kcat_offset_relative_to_end(broker):
    topic = unique_topic("kcat-tail")
    kcat("-b", broker.bootstrap, "-P", "-t", topic, stdin=b"".join(f"m{i}\n".encode() for i in range(10)))
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "-2", "-e", "-f", "%o %s\n")
    assert out.splitlines() == ["8 m8", "9 m9"]
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "end", "-e", "-f", "%o %s\n")
    assert out == "", f"-o end on a quiet partition returned {out!r}"
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "7", "-c", "1", "-f", "%o %s\n")
    assert out.splitlines() == ["7 m7"]


def test_kcat_offset_by_timestamp(broker):
    topic = unique_topic("kcat-time")
    create_topic(broker.bootstrap, topic, 1)
    base_ts = int(time.time() * 1000) - 120_000
    produce("confluent", broker.bootstrap, topic,
            [Msg(None, f"t{i}".encode(), (), base_ts + 1000 * i, 0) for i in range(10)])
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", f"s@{base_ts + 6500}", "-e",
               "-f", "%o %s %T\n")
    assert out.splitlines() == [f"{i} t{i} {base_ts + 1000 * i}" for i in range(7, 10)]
    queried = kcat("-b", broker.bootstrap, "-Q", "-t", f"{topic}:0:{base_ts + 3000}")
    assert re.search(r"\boffset 3\b", queried), queried
