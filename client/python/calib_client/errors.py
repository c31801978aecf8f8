"""CalibError: how every failed call to a calib server reaches the caller."""

import grpc


class CalibError(Exception):
    """An RPC to the calib server failed.

    Attributes:
        code: the grpc.StatusCode the server (or the channel) returned, e.g.
            grpc.StatusCode.INVALID_ARGUMENT for a label out of range.
        details: the server's own message, e.g. which row held the bad value.
    """

    def __init__(self, method: str, server: str, code: grpc.StatusCode, details: str):
        self.method = method
        self.server = server
        self.code = code
        self.details = details
        super().__init__(f"{method} on {server} failed: {code.name}: {details}")

    @classmethod
    def from_rpc_error(cls, method: str, server: str, error: grpc.RpcError) -> "CalibError":
        # The RpcError a failed call raises is also its grpc.Call.
        return cls(method, server, error.code(), error.details() or "")
