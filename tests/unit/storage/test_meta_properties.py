"""meta.properties follows Kafka's rules: version 1, a cluster id, and the node id of this node."""

from __future__ import annotations

import pytest

from cluster.core.errors import KafkaError
from cluster.storage.meta_properties import (
    META_PROPERTIES,
    load_cluster_id,
    read_meta_properties,
    write_meta_properties,
)


def test_formatted_once_and_read_back(tmp_path):
    write_meta_properties(str(tmp_path), "cluster-a", 3)
    write_meta_properties(str(tmp_path), "cluster-b", 3)   # an existing file is never rewritten
    assert read_meta_properties(str(tmp_path), 3).cluster_id == "cluster-a"


def test_another_nodes_directory_is_refused_with_both_ids(tmp_path):
    write_meta_properties(str(tmp_path), "cluster-a", 3)
    with pytest.raises(KafkaError, match="node.id=3, but this broker is node.id=5"):
        read_meta_properties(str(tmp_path), 5)


@pytest.mark.parametrize("text, problem", [("cluster.id=x\nnode.id=1\n", "version"),
                                           ("version=1\nnode.id=1\n", "cluster.id"),
                                           ("version=1\ncluster.id=x\n", "node.id")])
def test_a_file_missing_a_key_is_refused(tmp_path, text, problem):
    (tmp_path / META_PROPERTIES).write_text(text)
    with pytest.raises(KafkaError, match=problem):
        read_meta_properties(str(tmp_path), 1)


def test_only_a_sole_voter_formats_a_fresh_directory(tmp_path):
    with pytest.raises(KafkaError, match="is missing"):
        load_cluster_id(str(tmp_path / "voter"), 1, format_if_missing=False)
    cluster_id = load_cluster_id(str(tmp_path / "single"), 1, format_if_missing=True)
    assert len(cluster_id) == 22
    assert load_cluster_id(str(tmp_path / "single"), 1, format_if_missing=False) == cluster_id
