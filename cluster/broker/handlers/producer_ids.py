"""InitProducerId: hands idempotent producers a producer id that this cluster never handed out before.

Ids come from blocks the active controller allocated to this broker (ProducerIdsRecord in the metadata log), so
they are unique across the cluster and across restarts.  As in Kafka, a producer without a
``transactional.id`` always gets a fresh id with epoch 0, also when it asks to bump the epoch of its current id
(KIP-360, v3+): a new id fences nothing and keeps the sequence rules simple.  Transactions are not implemented
yet and no transaction coordinator is advertised, so a transactional id is refused with
TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a fatal error the clients report instead of retrying forever.
"""

from __future__ import annotations

import logging

from cluster.broker.handlers.context import RequestContext
from cluster.core.errors import ErrorCode, KafkaError
from cluster.wire.messages import init_producer_id_response as ipr

log = logging.getLogger("cluster.broker.handlers")


async def handle_init_producer_id(context: RequestContext, request) -> ipr.InitProducerIdResponse:
    if request.transactional_id is not None:
        return ipr.InitProducerIdResponse(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                          producer_id=-1, producer_epoch=-1)
    try:
        producer_id = await context.services.controller.next_producer_id()
    except KafkaError as exc:
        code = exc.error_code if exc.error_code != ErrorCode.NOT_CONTROLLER else ErrorCode.COORDINATOR_NOT_AVAILABLE
        return ipr.InitProducerIdResponse(error_code=code, producer_id=-1, producer_epoch=-1)
    if request.producer_id >= 0:
        # KIP-360: an idempotent producer asks to bump its epoch after an error it could not resolve; it then
        # re-sends what was unacknowledged under the new id, which no broker can tell from a new write.
        log.info("InitProducerId from %s (%s): bump of producer id %d epoch %d answered with new producer id %d",
                 context.peer, context.client_id, request.producer_id, request.producer_epoch, producer_id)
    return ipr.InitProducerIdResponse(error_code=0, producer_id=producer_id, producer_epoch=0)
