#!/bin/sh
# Container entrypoint for kraftpy: derive node.id from a StatefulSet pod name, then exec the broker.
#
# In Kubernetes every pod of the StatefulSet shares one spec, so its node.id cannot be written in the
# manifest: it comes from the pod ordinal in the hostname (kraftpy-0 -> node.id 1, kraftpy-2 -> 3), matching
# the 1@,2@,3@ entries of controller.quorum.voters.  An explicit KRAFTPY_NODE_ID (docker-compose sets one)
# always wins.  `exec` replaces this shell, so the broker is PID 1 and receives SIGTERM itself.
set -eu

if [ -z "${KRAFTPY_NODE_ID:-}" ]; then
    host="${HOSTNAME:-$(hostname)}"
    ordinal="${host##*-}"
    case "$ordinal" in
        "$host" | "" | *[!0-9]*) ;;  # no "-<digits>" suffix: keep node.id from the config file
        *) KRAFTPY_NODE_ID=$((ordinal + ${KRAFTPY_NODE_ID_OFFSET:-1})); export KRAFTPY_NODE_ID ;;
    esac
fi

exec "$@"
