"""``meta.properties``: which cluster and which node a log directory belongs to (Kafka's format, one copy).

Why it exists: a log directory mounted on the wrong node, or left over from another cluster, must be refused
before anything in it is read or replicated.  Kafka's ``kafka-storage format`` writes this file; kraftpy's
``local-cluster`` and test harnesses do the same, and a node started without ``controller.quorum.voters`` (a
one-voter quorum) formats a fresh directory itself, as the single-node broker always did.

Kafka's rules (MetaProperties.java, version 1, KRaft): ``version=1``, a non-empty ``cluster.id`` and a
``node.id`` that must equal the node's configured ``node.id``.  Lines are ``key=value``; ``#`` starts a comment.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import uuid

from cluster.core.errors import ErrorCode, KafkaError
from cluster.storage.fs import LOCAL_FS

META_PROPERTIES = "meta.properties"
VERSION = 1


@dataclasses.dataclass(frozen=True)
class MetaProperties:
    cluster_id: str
    node_id: int


def new_cluster_id() -> str:
    """Kafka's cluster ids are 22-character URL-safe base64 of a random UUID."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


def write_meta_properties(log_dir: str, cluster_id: str, node_id: int) -> None:
    """Kafka's ``kafka-storage format``: names the cluster and node of a fresh log directory.  An existing file
    is left alone (re-formatting never silently moves a directory to another cluster)."""
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, META_PROPERTIES)
    if not os.path.exists(path):
        text = f"version={VERSION}\ncluster.id={cluster_id}\nnode.id={node_id}\n"
        LOCAL_FS.write_file_atomically(path, text.encode("utf-8"))


def read_meta_properties(log_dir: str, node_id: int) -> MetaProperties | None:
    """The directory's identity, None when it was never formatted; refuses a file that breaks Kafka's rules or
    belongs to another node."""
    path = os.path.join(log_dir, META_PROPERTIES)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle.read().splitlines()]
    properties = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    version = properties.get("version", "")
    if version != str(VERSION):
        raise _refused(f"{path} has version={version or '(none)'}; only version={VERSION} (KRaft) is supported")
    cluster_id = properties.get("cluster.id", "")
    if not cluster_id:
        raise _refused(f"{path} names no cluster.id")
    stored = properties.get("node.id", "")
    if not stored.lstrip("-").isdigit():
        raise _refused(f"{path} names no node.id")
    if int(stored) != node_id:
        raise _refused(f"{path} belongs to node.id={stored}, but this broker is node.id={node_id}: check log.dirs "
                       "and node.id (a directory must not move between nodes)")
    return MetaProperties(cluster_id, node_id)


def load_cluster_id(log_dir: str, node_id: int, *, format_if_missing: bool) -> str:
    """The cluster id of ``log_dir``.  A directory never formatted is formatted with a new cluster id when
    ``format_if_missing`` (a one-voter quorum: a new single node is its own cluster), else refused: a voter of a
    larger quorum must share the cluster id of the others, which only ``format`` can give it."""
    properties = read_meta_properties(log_dir, node_id)
    if properties is not None:
        return properties.cluster_id
    if not format_if_missing:
        raise _refused(f"{os.path.join(log_dir, META_PROPERTIES)} is missing: format the log directory with the "
                       "cluster's id first (kraftpy local-cluster does this; see write_meta_properties)")
    cluster_id = new_cluster_id()
    write_meta_properties(log_dir, cluster_id, node_id)
    return cluster_id


def _refused(message: str) -> KafkaError:
    return KafkaError(ErrorCode.INCONSISTENT_CLUSTER_ID, message)
