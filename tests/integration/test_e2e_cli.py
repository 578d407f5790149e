"""Starting the broker the documented ways: `kraftpy broker`, --override, KRAFTPY_LOG_DIRS, bad config.

Configuration precedence is built-in defaults < properties file < KRAFTPY_* environment < --override
flags; a bad value must stop the broker at start with exit status 2 and a message naming the key.
"""

from __future__ import annotations

import pytest
from broker_process import BrokerProcess, BrokerStartError
from client_adapters import Msg, create_topic, produce, unique_topic
from external_broker import require_own_broker

pytestmark = [pytest.mark.timeout(60)]


def _partition_count(bootstrap: str, topic: str) -> int:
    from confluent_kafka.admin import AdminClient

    return len(AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10).topics[topic].partitions)


def test_console_script_with_override_flag(broker_factory):
    broker = broker_factory("cli", console_script=True, extra_args=["--override", "num.partitions=3"])
    assert broker.command()[0].endswith("/kraftpy")
    topic = unique_topic("auto3")
    produce("confluent", broker.bootstrap, topic, [Msg(b"k", b"v")])
    assert _partition_count(broker.bootstrap, topic) == 3, "--override num.partitions=3 beats the file's 1"


def test_env_log_dirs_overrides_the_file(broker_factory, tmp_path):
    env_dir = tmp_path / "from-env"
    broker = broker_factory("envdirs", env={"KRAFTPY_LOG_DIRS": str(env_dir)})
    topic = unique_topic("envdir")
    create_topic(broker.bootstrap, topic, 1)
    produce("confluent", broker.bootstrap, topic, [Msg(b"k", b"v", partition=0)])
    assert (env_dir / f"{topic}-0").is_dir(), f"no partition directory under KRAFTPY_LOG_DIRS={env_dir}"
    assert not (broker.data_dir / f"{topic}-0").exists(), "log.dirs from the file was used despite the env"


@pytest.mark.parametrize("key,value", [("num.partitions", "0"), ("log.segment.bytes", "lots"),
                                       ("node.id", "-5")])
def test_bad_config_fails_fast_naming_the_key(tmp_path, key, value):
    require_own_broker()
    broker = BrokerProcess(tmp_path / "bad", name="bad-config", overrides={key: value})
    try:
        with pytest.raises(BrokerStartError):
            broker.start(timeout_s=15)
    finally:
        broker.stop()
    assert broker.exit_codes and broker.exit_codes[0] == 2, f"exit codes {broker.exit_codes}"
    assert key in broker.log_tail(), f"the error does not name {key}:\n{broker.log_tail()}"
