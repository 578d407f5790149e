"""deploy/docker-compose.yml: Compose v2 accepts it, rejects broken variants, and it describes a 3-voter cluster.

The structural checks parse the YAML (anchors and merge keys resolved) and feed each broker's environment
through kraftpy's own config parser, so a typo in a KRAFTPY_* value fails here instead of at `compose up`.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from conftest import COMPOSE_FILE, DEPLOY_DIR

from cluster.config import BrokerConfig, parse_listener

BROKERS = ("broker1", "broker2", "broker3")


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def broker_config(service: dict) -> BrokerConfig:
    env = {key: str(value) for key, value in service["environment"].items()}
    return BrokerConfig.from_sources({}, environ=env)


# -- Compose v2 itself ------------------------------------------------------------------------------------------------
def test_compose_config_accepts_the_file(run_compose_config):
    result = run_compose_config(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr


MUTATIONS = {
    "undefined volume": ("- broker3-data:/var/lib/kraftpy", "- broker3-datax:/var/lib/kraftpy",
                         "undefined volume"),
    "bad healthcheck retries": ("retries: 12", "retries: twelve", "twelve"),
    "unknown service key": ("    hostname: broker2\n", "    hostname: broker2\n    portz: [1]\n", "portz"),
    "depends_on undefined service": ("      broker3:\n        condition: service_healthy",
                                     "      broker9:\n        condition: service_healthy", "broker9"),
}


def _write_copy(tmp_path, text: str):
    # Same directory layout as the original, so relative paths (build context ..) mean the same.
    target_dir = tmp_path / "repo" / "deploy"
    target_dir.mkdir(parents=True)
    shutil.copy(DEPLOY_DIR / "Dockerfile", target_dir / "Dockerfile")
    path = target_dir / "docker-compose.yml"
    path.write_text(text)
    return path


def test_an_unmodified_copy_passes(run_compose_config, tmp_path):
    """Control for the negative tests: copying alone does not make validation fail."""
    result = run_compose_config(_write_copy(tmp_path, COMPOSE_FILE.read_text()))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_compose_config_rejects_a_broken_file(run_compose_config, tmp_path, name):
    old, new, expected_message = MUTATIONS[name]
    original = COMPOSE_FILE.read_text()
    assert old in original, f"mutation {name!r} no longer applies to deploy/docker-compose.yml"
    result = run_compose_config(_write_copy(tmp_path, original.replace(old, new, 1)))
    assert result.returncode != 0, f"{name}: compose accepted a broken file"
    assert expected_message in result.stderr, result.stderr


# -- structure ----------------------------------------------------------------------------------------------------------
def test_three_broker_services_all_voters():
    compose = load_compose()
    brokers = {name: svc for name, svc in compose["services"].items() if "profiles" not in svc}
    assert sorted(brokers) == list(BROKERS)
    for name, service in brokers.items():
        config = broker_config(service)
        assert config.get("process.roles") == ["broker", "controller"]
        voters = config.get("controller.quorum.voters")
        assert len(voters) == 3
        by_id = {int(item.split("@")[0]): item.split("@")[1] for item in voters}
        assert sorted(by_id) == [1, 2, 3]
        assert {address.rsplit(":", 1)[0] for address in by_id.values()} == set(BROKERS)
        # This node's own voter entry names this service (its gRPC server binds that name).
        assert by_id[config.node_id].rsplit(":", 1)[0] == name == service["hostname"]


def test_node_ids_are_distinct_and_listeners_advertise_internal_and_external_endpoints():
    """INTERNAL advertises the service name (reachable inside the compose network), EXTERNAL advertises
    localhost on a port published on the host as itself (reachable from the host)."""
    compose = load_compose()
    node_ids = set()
    external_ports = set()
    for name in BROKERS:
        service = compose["services"][name]
        config = broker_config(service)
        node_ids.add(config.node_id)
        bound = {listener: port for listener, _host, port in config.listeners}
        advertised = {listener: (host, port) for listener, host, port in config.advertised_listeners}
        assert set(bound) == set(advertised) == {"INTERNAL", "EXTERNAL"}
        assert advertised["INTERNAL"] == (name, bound["INTERNAL"])
        external_host, external_port = advertised["EXTERNAL"]
        assert external_host == "localhost" and external_port == bound["EXTERNAL"]
        external_ports.add(external_port)
        published = {str(item).split(":")[1]: str(item).split(":")[0] for item in service["ports"]}
        assert published[str(external_port)] == str(external_port), "host port must equal the advertised port"
        assert str(bound["INTERNAL"]) not in published, "INTERNAL stays inside the compose network"
        metrics_port = str(parse_listener("X://" + config.get("metrics.listener"))[2])
        assert metrics_port in published
    assert node_ids == {1, 2, 3}
    assert len(external_ports) == 3, "each broker needs its own host port"


def test_the_one_shot_check_bootstraps_through_the_internal_listener():
    compose = load_compose()
    command = compose["services"]["quorum-check"]["command"]
    bootstrap = command[command.index("--bootstrap-server") + 1]
    host, port = bootstrap.rsplit(":", 1)
    internal = {listener: p for listener, _h, p in broker_config(compose["services"][host]).listeners}["INTERNAL"]
    assert int(port) == internal


def test_named_volumes_one_per_broker_at_the_image_data_dir():
    compose = load_compose()
    mounts = {}
    for name in BROKERS:
        service = compose["services"][name]
        (volume,) = service["volumes"]
        source, target = volume.split(":")
        mounts[name] = source
        assert target == "/var/lib/kraftpy"
        assert broker_config(service).log_dir.startswith(target + "/")
    assert len(set(mounts.values())) == 3
    assert set(mounts.values()) <= set(compose["volumes"])


def test_healthchecks_and_depends_on_conditions():
    compose = load_compose()
    for name in BROKERS:
        check = compose["services"][name]["healthcheck"]
        assert isinstance(check["test"], list) and check["test"][0] == "CMD"  # exec form, no shell needed
        assert "/readyz" in check["test"][-1]
        assert isinstance(check["retries"], int) and check["retries"] > 0
        assert compose["services"][name]["stop_grace_period"]
    dependents = [svc for svc in compose["services"].values() if "depends_on" in svc]
    assert dependents, "some service must wait for the brokers"
    for service in dependents:
        conditions = {target: spec["condition"] for target, spec in service["depends_on"].items()}
        assert conditions == {name: "service_healthy" for name in BROKERS}
