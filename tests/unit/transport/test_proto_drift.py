"""The committed gRPC code in cluster/transport/_generated is exactly what `make proto` generates now."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "cluster" / "transport" / "_generated"


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None,
                    reason="grpcio-tools is not installed (pip install grpcio-tools): cannot regenerate")
def test_generated_code_matches_the_protos(tmp_path):
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto").rglob("*.proto"))
    assert protos, "no .proto files found"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iproto", f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", *protos], cwd=ROOT, check=True)
    generated = sorted(tmp_path.rglob("*_pb2*.py"))
    assert generated
    for path in generated:
        # The same import rewrite as the Makefile's sed.
        text = re.sub(r"^from cluster\.v1 import", "from cluster.transport._generated.cluster.v1 import",
                      path.read_text(), flags=re.MULTILINE)
        committed = COMMITTED / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} missing: run make proto"
        assert committed.read_text() == text, f"{committed} is stale: run make proto"
    committed_files = {p.relative_to(COMMITTED) for p in COMMITTED.rglob("*_pb2*.py")}
    assert committed_files == {p.relative_to(tmp_path) for p in generated}, "stale generated files: run make proto"


def test_every_proto_has_its_committed_modules():
    """Runs without grpcio-tools too: a new .proto (raft, controller, ...) must ship its generated code."""
    protos = sorted((ROOT / "proto").rglob("*.proto"))
    assert {p.stem for p in protos} >= {"raft", "controller"}
    for proto in protos:
        stem = proto.relative_to(ROOT / "proto").with_suffix("")
        for suffix in ("_pb2.py", "_pb2_grpc.py"):
            path = COMMITTED / f"{stem}{suffix}"
            assert path.exists(), f"{path} missing: run make proto"
