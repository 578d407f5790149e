"""The generator: schema parsing rules, determinism, no drift from the schemas, synthetic features."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import uuid
from pathlib import Path

import pytest

from cluster.core.errors import ProtocolDecodeError
from cluster.wire import codegen

REPO_ROOT = Path(__file__).resolve().parents[3]
GENERATED = REPO_ROOT / "cluster" / "wire" / "messages"
SCHEMA_DIRS = [
    REPO_ROOT.parent / "shared" / "kafka-protocol" / "messages",
    Path("/work/shared/kafka-protocol/messages"),
]
SCHEMAS = next((d for d in SCHEMA_DIRS if d.is_dir()), None)


def test_strip_comments_keeps_slashes_inside_strings():
    text = '// licence\n{ "a": "http://x//y", // trailing\n  "b": "q\\"//" }\n'
    assert json.loads(codegen.strip_comments(text)) == {"a": "http://x//y", "b": 'q"//'}


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("TimeoutMs", "timeout_ms"),
        ("ISRNodes", "isr_nodes"),
        ("IsrNodes", "isr_nodes"),
        ("ZkMigrationReady", "zk_migration_ready"),
        ("KRaftVersionFeature", "kraft_version_feature"),
        ("isKRaftController", "is_kraft_controller"),
        ("V3AndBelowTopics", "v3_and_below_topics"),
        ("timeoutMs", "timeout_ms"),
        ("TopicID", "topic_id"),
        ("Global", "global_"),
    ],
)
def test_snake_case(name, snake):
    assert codegen.snake_case(name) == snake


def test_parse_versions():
    assert codegen.parse_versions("0+") == (0, codegen.MAX_VERSION)
    assert codegen.parse_versions("3-5") == (3, 5)
    assert codegen.parse_versions("7") == (7, 7)
    assert codegen.parse_versions("none") == codegen.EMPTY
    assert not codegen.in_range(codegen.EMPTY, 0)


def _field(type_name, default):
    return codegen.FieldSpec("F", "f", type_name, (0, 1), codegen.EMPTY, codegen.EMPTY, None, default, None)


@pytest.mark.parametrize(
    ("type_name", "default", "value"),
    [
        ("int32", "0x7fffffff", 2**31 - 1),
        ("int32", "-2147483648", -(2**31)),
        ("int64", -1, -1),
        ("int8", None, 0),
        ("bool", "true", True),
        ("bool", False, False),
        ("string", "null", None),
        ("string", "", ""),
        ("string", None, ""),
        ("bytes", "null", None),
        ("float64", "1.5", 1.5),
    ],
)
def test_default_values(type_name, default, value):
    assert codegen.default_value(_field(type_name, default)) == value


@pytest.mark.skipif(SCHEMAS is None, reason="Kafka JSON schemas (../shared/kafka-protocol/messages) not present")
def test_committed_codecs_match_the_schemas(tmp_path):
    """Regenerating from the schemas gives exactly the committed files: no hand edits, no drift."""
    codegen.write_all(SCHEMAS, tmp_path)
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.py")}
    committed = {p.name: p.read_text() for p in GENERATED.glob("*.py")}
    assert sorted(fresh) == sorted(committed)
    drifted = [name for name in fresh if fresh[name] != committed[name]]
    assert drifted == [], f"run `python -m cluster.wire.codegen`; drifted: {drifted[:10]}"


METADATA_GENERATED = REPO_ROOT / "cluster" / "wire" / "metadata_records"
METADATA_SCHEMAS = next((d.parent / "metadata" for d in SCHEMA_DIRS if (d.parent / "metadata").is_dir()), None)


@pytest.mark.skipif(METADATA_SCHEMAS is None, reason="Kafka metadata schemas (../shared/kafka-protocol/metadata) not present")
def test_committed_metadata_record_codecs_match_the_schemas(tmp_path):
    """The metadata_records package is regenerated exactly as committed, and deterministically."""
    codegen.write_all_metadata(METADATA_SCHEMAS, tmp_path)
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.py")}
    committed = {p.name: p.read_text() for p in METADATA_GENERATED.glob("*.py")}
    assert sorted(fresh) == sorted(committed)
    drifted = [name for name in fresh if fresh[name] != committed[name]]
    assert drifted == [], f"run `python -m cluster.wire.codegen`; drifted: {drifted[:10]}"
    assert codegen.generate_all_metadata(METADATA_SCHEMAS) == codegen.generate_all_metadata(METADATA_SCHEMAS)


def test_metadata_records_table_is_keyed_by_api_key():
    from cluster.wire.metadata_records import API_KEY_BY_NAME, RECORDS

    assert len(RECORDS) >= 20
    for api_key, module in RECORDS.items():
        assert module.API_KEY == api_key
        assert API_KEY_BY_NAME[module.SCHEMA[0]] == api_key
    assert API_KEY_BY_NAME["PartitionChangeRecord"] == 5 and API_KEY_BY_NAME["TopicRecord"] == 2


def test_main_also_writes_metadata_records(tmp_path, capsys):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "TinyRequest.json").write_text(json.dumps(TINY_SCHEMA))
    meta = tmp_path / "meta"
    meta.mkdir()
    record = {"apiKey": 77, "type": "metadata", "name": "TinyRecord", "validVersions": "0",
              "flexibleVersions": "0+", "fields": [{"name": "Id", "type": "int32", "versions": "0+"}]}
    (meta / "TinyRecord.json").write_text(json.dumps(record))
    out_meta = tmp_path / "out_meta"
    argv = ["--schemas", str(schemas), "--out", str(tmp_path / "out"),
            "--metadata-schemas", str(meta), "--metadata-out", str(out_meta)]
    assert codegen.main(argv) == 0
    assert sorted(p.name for p in out_meta.glob("*.py")) == ["__init__.py", "tiny_record.py"]
    assert "77: tiny_record," in (out_meta / "__init__.py").read_text()


@pytest.mark.skipif(SCHEMAS is None, reason="Kafka JSON schemas (../shared/kafka-protocol/messages) not present")
def test_generation_is_deterministic():
    assert codegen.generate_all(SCHEMAS) == codegen.generate_all(SCHEMAS)


def test_generated_files_carry_the_header_and_no_schema_prose():
    files = sorted(GENERATED.glob("*.py"))
    assert len(files) > 170
    for path in files:
        text = path.read_text()
        assert text.startswith(codegen.HEADER + "\n"), path.name
        assert "Licensed to the Apache Software Foundation" not in text, path.name
        assert '"about"' not in text, path.name
    # a sentence from ProduceRequest.json's "about" texts
    assert "The transactional ID, or null" not in (GENERATED / "produce_request.py").read_text()


def test_main_writes_into_out_dir(tmp_path, capsys):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "TinyRequest.json").write_text(json.dumps(TINY_SCHEMA))
    out = tmp_path / "out"
    assert codegen.main(["--schemas", str(schemas), "--out", str(out),
                         "--metadata-schemas", str(tmp_path / "no-metadata")]) == 0
    assert sorted(p.name for p in out.glob("*.py")) == ["__init__.py", "tiny_request.py"]
    assert "generated 2 files" in capsys.readouterr().out
    assert codegen.main(["--schemas", str(tmp_path / "missing"), "--out", str(out)]) == 2


# A synthetic schema exercising what the real ones barely use: uint32, float64, arrays of
# bytes/bool/uuid, a field-level flexibleVersions override, a versioned nested struct, hex defaults,
# tagged fields of several types.
TINY_SCHEMA = {
    "apiKey": 999,
    "type": "request",
    "name": "TinyRequest",
    "validVersions": "0-2",
    "flexibleVersions": "1+",
    "fields": [
        {"name": "Count", "type": "uint32", "versions": "0+", "default": "0xffffffff"},
        {"name": "Ratio", "type": "float64", "versions": "0+"},
        {"name": "OldStyle", "type": "string", "versions": "0+", "nullableVersions": "0+",
         "flexibleVersions": "none"},
        {"name": "Blobs", "type": "[]bytes", "versions": "0+"},
        {"name": "Flags", "type": "[]bool", "versions": "2+"},
        {"name": "Ids", "type": "[]uuid", "versions": "0+"},
        {"name": "Port", "type": "uint16", "versions": "0+"},
        {"name": "Inner", "type": "InnerStruct", "versions": "0+", "fields": [
            {"name": "A", "type": "int8", "versions": "0+", "default": "-1"},
            {"name": "B", "type": "string", "versions": "2+", "default": "bee"},
        ]},
        {"name": "Note", "type": "string", "versions": "1+", "tag": 0, "taggedVersions": "1+",
         "default": "hi"},
        {"name": "Extra", "type": "[]int64", "versions": "1+", "tag": 7, "taggedVersions": "1+"},
        {"name": "Sub", "type": "InnerStruct2", "versions": "1+", "tag": 2, "taggedVersions": "1+",
         "fields": [{"name": "X", "type": "int32", "versions": "1+", "default": "5"}]},
    ],
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from cluster.wire.codegen import ModuleGenerator, load_message

    d = tmp_path_factory.mktemp("tiny")
    schema_path = d / "TinyRequest.json"
    schema_path.write_text("// licence line\n" + json.dumps(TINY_SCHEMA))
    source = ModuleGenerator(load_message(schema_path)).generate()
    module_path = d / "tiny_request.py"
    module_path.write_text(source)
    spec = importlib.util.spec_from_file_location("tiny_request_generated", module_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_synthetic_defaults(tiny):
    obj = tiny.TinyRequest()
    assert obj.count == 0xFFFFFFFF
    assert obj.ratio == 0.0
    assert obj.old_style == ""
    assert obj.blobs == [] and obj.flags == [] and obj.ids == []
    assert obj.inner == tiny.InnerStruct(a=-1, b="bee")
    assert obj.note == "hi"
    assert obj.sub.x == 5
    assert tiny.TinyRequest().blobs is not obj.blobs  # fresh lists per instance
    assert tiny.FLEXIBLE_MIN_VERSION == 1 and tiny.API_KEY == 999


def test_synthetic_roundtrip_every_version(tiny):
    u = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    for version in (0, 1, 2):
        obj = tiny.TinyRequest(
            count=2**32 - 2,
            ratio=-math.pi,
            old_style=None,
            blobs=[b"", b"xyz"],
            flags=[True, False] if version >= 2 else [],
            ids=[u, uuid.UUID(int=0)],
            port=65535,
            inner=tiny.InnerStruct(a=7, b="z" if version >= 2 else "bee"),
            note="other" if version >= 1 else "hi",
            extra=[1, -(2**63)] if version >= 1 else [],
            sub=tiny.InnerStruct2(x=9) if version >= 1 else tiny.InnerStruct2(),
        )
        raw = bytes(tiny.encode(obj, version))
        back, end = tiny.decode(raw, 0, version)
        assert end == len(raw)
        assert back == obj, version
        assert bytes(tiny.encode(back, version)) == raw


def test_field_level_flexible_override_keeps_int16_string_length(tiny):
    raw = bytes(tiny.encode(tiny.TinyRequest(old_style="ab"), 1))
    # count uint32, ratio float64, then the old-style string: int16 length even in a flexible version
    assert raw[12:16] == b"\x00\x02ab"
    raw_null = bytes(tiny.encode(tiny.TinyRequest(old_style=None), 1))
    assert raw_null[12:14] == b"\xff\xff"


def test_synthetic_tagged_fields_written_only_when_not_default(tiny):
    plain = bytes(tiny.encode(tiny.TinyRequest(), 1))
    assert plain.endswith(b"\x00")  # empty top-level tagged-field section
    with_tags = bytes(tiny.encode(tiny.TinyRequest(note="yo", extra=[3], sub=tiny.InnerStruct2(x=6)), 1))
    tail = with_tags[len(plain) - 1:]
    # 3 fields, ascending tags: 0 "yo" (compact string), 2 struct {x=6, no tags}, 7 [3] (compact array)
    assert tail == b"\x03" + b"\x00\x03\x03yo" + b"\x02\x05\x00\x00\x00\x06\x00" + b"\x07\x09\x02" + (3).to_bytes(8, "big")


def test_synthetic_unsupported_version(tiny):
    with pytest.raises(ProtocolDecodeError, match="no version 3"):
        tiny.decode(b"", 0, 3)
    with pytest.raises(ValueError):
        tiny.encode(tiny.TinyRequest(), 3)
