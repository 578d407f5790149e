"""Fixtures that run real broker processes for the end-to-end tests.

`broker` is one broker per test module (fresh data directory under pytest's tmp path, free port);
tests share it and isolate themselves by unique topic names.  `broker_factory` starts extra brokers
for a single test (crash/restart tests, brokers with config overrides).  Every broker logs to its own
file; when a test fails, the part of each running broker's log written during that test is attached
to the failure report, and a broker that died on its own fails the test that was running.

Set KRAFTPY_IT_BOOTSTRAP=host:port to point the shared-broker tests at an already running broker
(e.g. a real Kafka, for comparison); tests that need their own process or its data directory are then
skipped with that reason.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from broker_process import BrokerProcess  # noqa: E402
from external_broker import EXTERNAL_BOOTSTRAP, ExternalBroker, require_own_broker  # noqa: E402

_running: list[BrokerProcess] = []  # brokers started by these fixtures and not yet stopped
_log_marks = pytest.StashKey[dict]()


def _start(work_dir: Path, name: str, overrides: dict[str, str] | None, **options) -> BrokerProcess:
    broker = BrokerProcess(work_dir, name=name, overrides=overrides, **options)
    _running.append(broker)  # registered before start so a failed start still shows its log
    broker.start()
    return broker


def _finish(broker: BrokerProcess) -> None:
    try:
        broker.stop()
    finally:
        if broker in _running:
            _running.remove(broker)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """The module's shared broker (defaults: 1 partition per topic, auto-create on)."""
    if EXTERNAL_BOOTSTRAP:
        yield ExternalBroker(EXTERNAL_BOOTSTRAP)
        return
    process = _start(tmp_path_factory.mktemp("broker"), "shared-broker", None)
    try:
        yield process
    finally:
        _finish(process)


@pytest.fixture
def broker_factory(tmp_path):
    """start(name, overrides, **BrokerProcess options) -> a running BrokerProcess, stopped at the end of
    the test whatever happens (options: extra_args, env, console_script)."""
    require_own_broker()
    started: list[BrokerProcess] = []

    def start(name: str = "broker", overrides: dict[str, str] | None = None, **options) -> BrokerProcess:
        process = BrokerProcess(tmp_path / name, name=name, overrides=overrides, **options)
        started.append(process)
        _running.append(process)
        process.start()
        return process

    try:
        yield start
    finally:
        for process in started:
            _finish(process)


@pytest.fixture(autouse=True)
def _broker_health(request):
    """Restart a shared broker that died earlier; after the test, fail it if a broker died during it."""
    for process in list(_running):
        if process.process is not None and process.process.poll() is not None:
            rc = process.process.returncode
            process.exit_codes.append(rc)
            process.process = None
            process._append_log(f"=== harness: {process.name} had died (status {rc}); restarting for "
                                f"{request.node.nodeid}\n")
            process.start()
    request.node.stash[_log_marks] = {id(p): p.log_size() for p in _running}
    yield
    gc.collect()  # client objects in reference cycles (callbacks) would keep reconnecting to stopped brokers
    died = [(p, p.process.returncode) for p in _running
            if p.process is not None and p.process.poll() is not None]
    if died:
        names = ", ".join(f"{p.name} (pid {p.pid}, exit status {rc})" for p, rc in died)
        pytest.fail(f"broker process died during the test: {names}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    marks = item.stash.get(_log_marks, {})
    for process in _running:
        text = process.log_since(marks.get(id(process), 0), max_bytes=10_000)
        state = "running" if process.is_alive() else f"not running, exit codes {process.exit_codes}"
        report.sections.append(
            (f"broker log during {report.when}: {process.name} pid {process.pid} {state} ({process.log_path})",
             text))
