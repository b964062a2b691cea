"""What the server interceptors share: the methods every caller may always reach, and wrapping a handler's
behaviour without changing its kind (unary or streaming requests and responses, its (de)serializers)."""
from __future__ import annotations

from collections.abc import Callable

import grpc

# Health (probes, `unitocom status`) and reflection (grpcurl): never refused for load, identity or token.
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                   "/grpc.reflection.v1.ServerReflection/")

_KINDS = {(False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
          (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
          (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
          (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler)}


def wrap_handler(handler: grpc.RpcMethodHandler, wrap: Callable[[Callable, bool], Callable]) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour replaced by wrap(behaviour, response_streaming): the same kind of handler,
    with the same (de)serializers. A wrapper of a streaming response must hold what it holds while the
    response is iterated, not only until the behaviour returns its generator."""
    attr, make = _KINDS[(handler.request_streaming, handler.response_streaming)]
    return make(wrap(getattr(handler, attr), handler.response_streaming),
                request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
