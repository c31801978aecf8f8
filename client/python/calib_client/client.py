"""Client: one channel to a calibd server, reused by every call; evaluate(): one call.

A Client is safe to share between threads (gRPC channels are), and evaluations on one
Client may run concurrently. Every RPC failure is raised as CalibError.
"""

import os
from typing import Any, Optional, Sequence, Union

import grpc

from . import config as config_options
from . import tensors
from .allocator import keep_freed_blocks
from .errors import CalibError
from .report import Report, ServerInfo, from_proto
from .stubs import calibration_pb2, calibration_pb2_grpc

DEFAULT_CHUNK_BYTES = 4 << 20
_EVALUATE_STREAM = "/calib.v1.CalibrationService/EvaluateStream"
_Pem = Optional[Union[bytes, str]]


def _pem(value: _Pem) -> Optional[bytes]:
    return value.encode() if isinstance(value, str) else value


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tensor_head(field: int, dtype: int, size: int) -> bytes:
    """A Tensor field's tag and length, its dtype, and its data's tag and length."""
    tensor = (b"\x08" + _varint(dtype) if dtype else b"") + b"\x12" + _varint(size)
    return bytes([field << 3 | 2]) + _varint(len(tensor) + size) + tensor


def _batch_message(logits: tensors.Rows, labels: tensors.Rows, first: int,
                   count: int) -> bytes:
    """EvaluateStreamRequest{batch: Batch{logits, labels}} for rows [first, first + count),
    serialized by hand: one copy of the rows, where building the message would take three
    (bytes of the slice, the message's field, its serialization)."""
    logits_data = logits.slice(first, count)
    labels_data = labels.slice(first, count)
    logits_head = _tensor_head(1, logits.dtype, len(logits_data))
    labels_head = _tensor_head(2, labels.dtype, len(labels_data))
    size = len(logits_head) + len(logits_data) + len(labels_head) + len(labels_data)
    return b"".join((b"\x12", _varint(size), logits_head, logits_data, labels_head,
                     labels_data))


class Client:
    """A connection to a calibd server.

    Args:
        server: "host:port"; defaults to the CALIB_SERVER environment variable.
        root_certificates, private_key, certificate_chain: PEM (bytes or str). Giving any
            of them makes the channel TLS (grpc.ssl_channel_credentials); root_certificates
            None trusts the system's roots; private_key and certificate_chain are the
            client's own certificate for mutual TLS.
        token: sent with every call as the metadata `authorization: Bearer <token>`. Over a
            channel without TLS the token travels in clear text.
        timeout: seconds each call may take (None: no deadline).
        chunk_bytes: the most bytes of logits and labels per streamed message; the
            server's max_message_bytes / 2 caps it. Rows are never split, and a message
            holds at least one row.
        interceptors: grpc client interceptors wrapped around the channel.
    """

    def __init__(self, server: Optional[str] = None, *, root_certificates: _Pem = None,
                 private_key: _Pem = None, certificate_chain: _Pem = None,
                 token: Optional[str] = None, timeout: Optional[float] = None,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, interceptors: Sequence[Any] = ()):
        server = server or os.environ.get("CALIB_SERVER")
        if not server:
            raise ValueError("no server given: pass server='host:port' or set CALIB_SERVER")
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes={chunk_bytes} must be at least 1")
        self.server = server
        self._timeout = timeout
        self._chunk_bytes = chunk_bytes
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        # Reports with many bins can pass gRPC's default 4 MiB receive limit.
        # round_robin spreads calls over every address of a target that names several
        # servers ("ipv4:127.0.0.1:P1,127.0.0.1:P2", or "dns:///" on a headless Service).
        # Keepalive within calibd's ping policy (it accepts a ping every 10 s at most):
        # a ping every 30 s on a quiet connection, between calls too, so a Client kept
        # across an evaluation loop notices a vanished server and stays through NAT.
        options = [("grpc.max_receive_message_length", -1),
                   ("grpc.lb_policy_name", "round_robin"),
                   ("grpc.keepalive_time_ms", 30_000),
                   ("grpc.keepalive_timeout_ms", 10_000),
                   ("grpc.keepalive_permit_without_calls", 1),
                   ("grpc.http2.max_pings_without_data", 0)]
        if root_certificates is None and private_key is None and certificate_chain is None:
            self._channel = grpc.insecure_channel(server, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(root_certificates), private_key=_pem(private_key),
                certificate_chain=_pem(certificate_chain))
            self._channel = grpc.secure_channel(server, credentials, options=options)
        self._intercepted = grpc.intercept_channel(self._channel, *interceptors)
        self._stub = calibration_pb2_grpc.CalibrationServiceStub(self._intercepted)
        # Requests go out as bytes this client frames itself (see _batch_message).
        self._evaluate_stream = self._intercepted.stream_unary(
            _EVALUATE_STREAM, request_serializer=None,
            response_deserializer=calibration_pb2.EvaluateStreamResponse.FromString)
        self._max_message_bytes: Optional[int] = None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _call(self, method: str, rpc, request):
        try:
            return rpc(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise CalibError.from_rpc_error(method, self.server, error) from None

    def server_info(self) -> ServerInfo:
        """The server's version and limits."""
        response = self._call("GetServerInfo", self._stub.GetServerInfo,
                              calibration_pb2.GetServerInfoRequest())
        self._max_message_bytes = response.max_message_bytes
        return from_proto(response)

    def health(self, service: str = "") -> str:
        """grpc.health.v1 status of `service` ("" = the whole server), e.g. "SERVING"."""
        # grpcio-health-checking, when installed, has already registered these messages
        # in protobuf's default pool, where a second definition would be an error.
        try:
            from grpc_health.v1 import health_pb2, health_pb2_grpc
        except ImportError:
            from ._gen import health_pb2, health_pb2_grpc
        stub = health_pb2_grpc.HealthStub(self._intercepted)
        response = self._call("Health.Check", stub.Check,
                              health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def _rows_per_message(self, logits: tensors.Rows, labels: tensors.Rows) -> int:
        if self._max_message_bytes is None:
            self.server_info()
        chunk_bytes = self._chunk_bytes
        if self._max_message_bytes:
            chunk_bytes = min(chunk_bytes, self._max_message_bytes // 2)
        return max(1, chunk_bytes // max(1, logits.row_bytes + labels.row_bytes))

    def evaluate(self, logits: Any, labels: Any, **options: Any) -> Report:
        """Streams `logits` and `labels` to the server and returns its Report.

        logits: NumPy array or torch tensor (any device) of shape [N, C], [N] (binary)
            or [B, S, C]; float32, float64, float16 or bfloat16.
        labels: [N] / [B, S] class indices (int32, int64, uint8, bool), or for SIGMOID
            the logits' shape of 0/1 targets (those, or float32 / float64).
        options: the EvaluationConfig fields (see calib_client.OPTIONS), e.g.
            activation="sigmoid", num_bins=15, ignore_index=-100, top_k=(1, 5),
            fit_temperature=True; unknown names raise TypeError.
        """
        logit_rows = tensors.logits_rows(logits)
        config = config_options.build_config(logit_rows.per_row, logit_rows.count, options)
        label_rows = tensors.labels_rows(labels, logit_rows)
        step = self._rows_per_message(logit_rows, label_rows)
        keep_freed_blocks(step * (logit_rows.row_bytes + label_rows.row_bytes))

        def requests():
            yield calibration_pb2.EvaluateStreamRequest(config=config).SerializeToString()
            for first in range(0, logit_rows.count, step):
                count = min(step, logit_rows.count - first)
                yield _batch_message(logit_rows, label_rows, first, count)

        response = self._call("EvaluateStream", self._evaluate_stream, requests())
        return from_proto(response.report)


def evaluate(logits: Any, labels: Any, server: Optional[str] = None, *,
             root_certificates: _Pem = None, private_key: _Pem = None,
             certificate_chain: _Pem = None, token: Optional[str] = None,
             timeout: Optional[float] = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
             **options: Any) -> Report:
    """One evaluation on a fresh connection: Client(server, ...).evaluate(logits, labels,
    **options). Use a Client to evaluate many times over one channel."""
    with Client(server, root_certificates=root_certificates, private_key=private_key,
                certificate_chain=certificate_chain, token=token, timeout=timeout,
                chunk_bytes=chunk_bytes) as client:
        return client.evaluate(logits, labels, **options)
