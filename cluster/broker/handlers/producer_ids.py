"""InitProducerId: hands idempotent producers a producer id that this cluster never handed out before.

As in Kafka, a producer without a ``transactional.id`` always gets a fresh id with epoch 0, also when it
asks to bump the epoch of its current id (KIP-360, v3+): a new id fences nothing and keeps the sequence
rules simple.  Transactions are not implemented yet and no transaction coordinator is advertised, so a
transactional id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a fatal error the clients report
instead of retrying forever.
"""

from __future__ import annotations

from cluster.broker.handlers.context import RequestContext
from cluster.core.errors import ErrorCode
from cluster.wire.messages import init_producer_id_response as ipr


def handle_init_producer_id(context: RequestContext, request) -> ipr.InitProducerIdResponse:
    if request.transactional_id is not None:
        return ipr.InitProducerIdResponse(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                          producer_id=-1, producer_epoch=-1)
    producer_id = context.broker.replica_manager.store.allocate_producer_id()
    return ipr.InitProducerIdResponse(error_code=0, producer_id=producer_id, producer_epoch=0)
