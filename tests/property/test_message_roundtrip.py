"""Every generated message codec, at every version, round-trips what it encodes.

Strategies are built from each module's SCHEMA, so a field exists in a drawn object only in the
versions that have it, is None only where nullable, and tagged fields are often left at their default
(which the encoder must then omit).  Versions whose encoder and decoder are the same functions are
tested once.  KRAFTPY_ROUNDTRIP_EXAMPLES sets the examples per (message, version) (default 15).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import uuid
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cluster.wire.messages as messages_pkg
from cluster.wire.primitives import ZERO_UUID

EXAMPLES = int(os.environ.get("KRAFTPY_ROUNDTRIP_EXAMPLES", "15"))

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


def _in(rng, version):
    return rng is not None and rng[0] <= version <= rng[1]


def _primitive(type_name):
    if type_name in _INT_RANGES:
        lo, hi = _INT_RANGES[type_name]
        # Mix small values (one-byte varints, typical ids) with the extremes.
        return st.one_of(st.integers(-2, 300).filter(lambda x: lo <= x <= hi), st.integers(lo, hi))
    if type_name == "bool":
        return st.booleans()
    if type_name == "float64":
        return st.floats(allow_nan=False)
    if type_name == "string":
        return st.text(max_size=6)
    if type_name in ("bytes", "records"):
        return st.binary(max_size=10)
    if type_name == "uuid":
        return st.one_of(st.just(ZERO_UUID), st.uuids())
    raise AssertionError(f"unknown primitive {type_name}")


def struct_strategy(module, struct_name, version, cache):
    key = (struct_name, version)
    if key in cache:
        return cache[key]
    _, structs = module.SCHEMA
    cls = getattr(module, struct_name)
    defaults = cls()
    kwargs = {}
    for attr, type_name, versions, nullable, tag, tagged, _default in structs[struct_name]:
        if not _in(versions, version):
            continue
        is_array = type_name.startswith("[]")
        elem = type_name[2:] if is_array else type_name
        if elem in structs:
            base = struct_strategy(module, elem, version, cache)
        else:
            base = _primitive(elem)
        value = st.lists(base, max_size=2 if elem in structs else 3) if is_array else base
        if _in(nullable, version):
            value = st.one_of(st.none(), value)
        if tag is not None and _in(tagged, version):
            value = st.one_of(st.just(getattr(defaults, attr)), value)
        kwargs[attr] = value
    strategy = st.builds(cls, **kwargs)
    cache[key] = strategy
    return strategy


def _cases():
    cases = []
    for info in sorted(pkgutil.iter_modules(messages_pkg.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"cluster.wire.messages.{info.name}")
        lo, hi = module.VALID_VERSIONS
        seen = set()
        for version in range(lo, hi + 1):
            pair = (module._DECODERS[version - lo], module._ENCODERS[version - lo])
            if pair in seen:
                continue  # same functions as an earlier version: same wire format
            seen.add(pair)
            cases.append(pytest.param(module, version, id=f"{info.name}-v{version}"))
    return cases


CASES = _cases()


def test_every_message_version_is_covered():
    names = {p.values[0].__name__ for p in CASES}
    assert len(names) == len(list(pkgutil.iter_modules(messages_pkg.__path__))) > 170
    assert len(CASES) > 400


@pytest.mark.parametrize(("module", "version"), CASES)
def test_roundtrip(module, version):
    strategy = struct_strategy(module, module.SCHEMA[0], version, {})

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(obj=strategy)
    def check(obj):
        encoded = bytes(module.encode(obj, version))
        decoded, end = module.decode(encoded, 0, version)
        assert end == len(encoded)
        assert decoded == obj
        assert bytes(module.encode(decoded, version)) == encoded
        # Decoding at an offset inside a larger buffer ends at the right place too.
        framed = b"\x07\x07" + encoded + b"\x09"
        again, end = module.decode(memoryview(framed), 2, version)
        assert end == 2 + len(encoded)
        assert again == obj

    check()


@settings(max_examples=20, deadline=None, database=None)
@given(value=_primitive("uuid"))
def test_uuid_strategy_draws_real_uuids(value):
    assert isinstance(value, uuid.UUID)


# ---- cross-check with an independent implementation ------------------------------------------
# kafka-python 3 also implements the protocol from Kafka's JSON schemas (of a later Kafka, whose
# version ranges differ), with its own code.  Bytes we encode must decode there and re-encode to the
# same bytes: this catches mistakes that a self-round-trip cannot, such as a wrong null marker or
# tag layout made symmetrically in our encoder and decoder.


def _kafka_python_classes():
    with warnings.catch_warnings():  # its schema loader uses deprecated importlib.resources calls
        warnings.simplefilter("ignore", DeprecationWarning)
        return _load_kafka_python_classes()


def _load_kafka_python_classes():
    try:
        import kafka.protocol as kafka_protocol
        from kafka.protocol.api_message import ApiMessage
    except ImportError:  # kafka-python < 3 has no schema-driven codecs
        return {}
    found = {}
    for info in pkgutil.walk_packages(kafka_protocol.__path__, "kafka.protocol."):
        if ".old" in info.name or "generate_stubs" in info.name:
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - optional modules of a third-party package
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, ApiMessage) and value is not ApiMessage:
                try:
                    found[value.name] = value
                except Exception:  # noqa: BLE001 - abstract helpers without a schema
                    continue
    return found


def _cross_cases():
    classes = _kafka_python_classes()
    cases = []
    for param in CASES:
        module, version = param.values
        theirs = classes.get(module.SCHEMA[0])
        if theirs is None or theirs.valid_versions is None:
            continue
        lo, hi = theirs.valid_versions
        if lo <= version <= hi:
            cases.append(pytest.param(module, version, theirs, id=param.id))
    return cases


CROSS_CASES = _cross_cases()


def test_cross_check_has_cases():
    if not CROSS_CASES:
        pytest.skip("kafka-python >= 3 (schema-driven codecs) is not installed")
    assert len(CROSS_CASES) > 100


@pytest.mark.parametrize(("module", "version", "theirs"), CROSS_CASES)
def test_kafka_python_reads_what_we_write(module, version, theirs):
    strategy = struct_strategy(module, module.SCHEMA[0], version, {})

    @settings(
        max_examples=max(3, EXAMPLES // 3),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(obj=strategy)
    def check(obj):
        if module.SCHEMA[0] == "ApiVersionsResponse":
            obj.error_code = 0  # kafka-python reads any errored ApiVersionsResponse as v0 (KIP-511)
        encoded = bytes(module.encode(obj, version))
        parsed = theirs.decode(encoded, version=version)
        parsed._header = None  # decode leaves it unset; some of their encode overrides read it
        assert bytes(parsed.encode()) == encoded

    check()
