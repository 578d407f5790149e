"""Blocks of producer ids handed to brokers (Kafka's ProducerIdControlManager).

Why it exists: a broker answers InitProducerId from a block of ids the controller allocated to it; the next block
starts where the image's ``ProducerIdsRecord`` says, so no id is handed out twice, across controllers too.
"""

from __future__ import annotations

from cluster.core.errors import ErrorCode
from cluster.metadata.controller_config import ControllerResult, ControlManager
from cluster.wire.metadata_records import producer_ids_record

__all__ = ["PRODUCER_ID_BLOCK_SIZE", "ProducerIdControlManager"]

PRODUCER_ID_BLOCK_SIZE = 1000  # ids handed out per AllocateProducerIds


class ProducerIdControlManager(ControlManager):
    def allocate_producer_ids(self, broker_id: int, broker_epoch: int) -> ControllerResult:
        """AllocateProducerIds: response (error_code, producer_id_start, producer_id_len)."""
        registration = self.image.cluster.broker(broker_id)
        if registration is None or registration.broker_epoch != broker_epoch:
            return ControllerResult((), (ErrorCode.STALE_BROKER_EPOCH, -1, 0))
        start = self.image.producer_ids.next_producer_id
        record = producer_ids_record.ProducerIdsRecord(broker_id=broker_id, broker_epoch=broker_epoch,
                                                       next_producer_id=start + PRODUCER_ID_BLOCK_SIZE)
        return ControllerResult((record,), (ErrorCode.NONE, start, PRODUCER_ID_BLOCK_SIZE))
