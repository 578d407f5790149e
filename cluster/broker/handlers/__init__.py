"""Request handlers, one module per API family; each turns a decoded request into a response object.

Handlers are plain functions ``handle_x(context, request) -> response`` or coroutines when they must wait
(acks=all, long-poll fetch).  They never encode bytes: ``cluster.broker.router`` does framing and codecs.
"""
