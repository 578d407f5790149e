"""Dynamic configs of topics and brokers (Kafka's ConfigurationControlManager).

Why it exists: IncrementalAlterConfigs is its own kind of decision, checked against the image's topics and
written as ConfigRecords; the topics' own configs at creation are written by the replication manager.
"""

from __future__ import annotations

from collections.abc import Sequence

from cluster.core.errors import ErrorCode
from cluster.metadata.controller_config import ControllerResult, ControlManager
from cluster.metadata.image import BROKER_RESOURCE, TOPIC_RESOURCE
from cluster.wire.metadata_records import config_record

__all__ = ["ConfigurationControlManager"]


class ConfigurationControlManager(ControlManager):
    def alter_configs(self, changes: Sequence[tuple[int, str, str, str | None]]) -> ControllerResult:
        """IncrementalAlterConfigs SET/DELETE: (resource_type, resource_name, name, value or None).

        Response: {(resource_type, resource_name): error_code}; a resource with an error writes nothing.
        """
        by_resource: dict[tuple[int, str], list] = {}
        for resource_type, resource_name, name, value in changes:
            by_resource.setdefault((resource_type, resource_name), []).append((name, value))
        records = []
        results = {}
        for (resource_type, resource_name), entries in by_resource.items():
            error = self._check_config_resource(resource_type, resource_name)
            results[(resource_type, resource_name)] = error
            if error == ErrorCode.NONE:
                records += [config_record.ConfigRecord(resource_type=resource_type, resource_name=resource_name,
                                                       name=name, value=value) for name, value in entries]
        return ControllerResult(tuple(records), results)

    def _check_config_resource(self, resource_type: int, resource_name: str) -> ErrorCode:
        if resource_type == TOPIC_RESOURCE:
            known = resource_name in self.image.topics.by_name
            return ErrorCode.NONE if known else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        if resource_type == BROKER_RESOURCE:
            return ErrorCode.NONE if resource_name == "" or resource_name.isdigit() else ErrorCode.INVALID_REQUEST
        return ErrorCode.INVALID_REQUEST
