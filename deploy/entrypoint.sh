#!/bin/sh
# Container entrypoint for kraftpy: derive node.id from a StatefulSet pod name, then exec the broker.
#
# In Kubernetes every pod of the StatefulSet shares one spec, so its node.id cannot be written in the
# manifest: it comes from the pod ordinal in the hostname (kraftpy-0 -> node.id 1, kraftpy-2 -> 3), matching
# the 1@,2@,3@ entries of controller.quorum.voters.  An explicit KRAFTPY_NODE_ID (docker-compose sets one)
# always wins.  `exec` replaces this shell, so the broker is PID 1 and receives SIGTERM itself.
#
# A broker in cluster mode refuses an unformatted log directory (no meta.properties naming the cluster id).
# Like Kafka's image with CLUSTER_ID, a non-empty KRAFTPY_CLUSTER_ID formats the directory on first start
# (`kafka-storage format`): it writes meta.properties only when it is missing, so restarts keep their data
# and a directory of another cluster is still refused by the broker.
set -eu

if [ -z "${KRAFTPY_NODE_ID:-}" ]; then
    host="${HOSTNAME:-$(hostname)}"
    ordinal="${host##*-}"
    case "$ordinal" in
        "$host" | "" | *[!0-9]*) ;;  # no "-<digits>" suffix: keep node.id from the config file
        *) KRAFTPY_NODE_ID=$((ordinal + ${KRAFTPY_NODE_ID_OFFSET:-1})); export KRAFTPY_NODE_ID ;;
    esac
fi

if [ -n "${KRAFTPY_CLUSTER_ID:-}" ] && [ -n "${KRAFTPY_NODE_ID:-}" ]; then
    log_dir="${KRAFTPY_LOG_DIRS:-/var/lib/kraftpy/data}"
    if [ ! -f "$log_dir/meta.properties" ]; then
        mkdir -p "$log_dir"
        printf 'version=1\ncluster.id=%s\nnode.id=%s\n' "$KRAFTPY_CLUSTER_ID" "$KRAFTPY_NODE_ID" \
            > "$log_dir/meta.properties.tmp"
        mv "$log_dir/meta.properties.tmp" "$log_dir/meta.properties"
        echo "kraftpy-entrypoint: formatted $log_dir for cluster $KRAFTPY_CLUSTER_ID (node.id $KRAFTPY_NODE_ID)" >&2
    fi
fi

exec "$@"
