"""Bad input over a real channel, against one calibd with limits: every row of the
status table of api.md through both Evaluate and EvaluateStream, protobuf bytes that do
not parse, raw garbage on the port, streams cut short, huge declared sizes. Each bad
call must end alone with its code and a message naming the field, row or limit; after
the whole matrix the server must still be SERVING, answer a good call exactly as the
in-process engine does (`calib eval --json` without a server), and exit 0 on SIGTERM
(in the sanitizer build, LeakSanitizer makes that exit non-zero on a leak).

Needs CALIBD_BIN, CALIB_BIN and PYTHONPATH=<build>/python (ctest sets them).
"""

import signal
import socket
import subprocess
import sys
import textwrap
import time

import grpc
import numpy as np
import pytest
from google.protobuf.internal.encoder import _VarintBytes

from calib_client.stubs import calibration_pb2 as pb
from calib_client.stubs import calibration_pb2_grpc as pb_grpc
from calibd_process import (Calibd, batch, reference_report, same_report, sanitized,
                            stream_messages)

MAX_ROWS = 10_000
MAX_CLASSES = 1_000
MAX_MESSAGE_BYTES = 1 << 20
TIMEOUT_S = 60
SERVICE = "/calib.v1.CalibrationService/"

C = grpc.StatusCode


@pytest.fixture(scope="module")
def calibd():
    server = Calibd("--threads", "2", "--max-rows", str(MAX_ROWS), "--max-classes",
                    str(MAX_CLASSES), "--max-message-bytes", str(MAX_MESSAGE_BYTES))
    yield server
    assert server.stop() == 0, server.log()[-4000:]


@pytest.fixture(scope="module")
def channel(calibd):
    with grpc.insecure_channel(calibd.address) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.CalibrationServiceStub(channel)


def good_data(rows=40, classes=5, seed=1):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(rows, classes)) * 2).astype(np.float32)
    labels = rng.integers(0, classes, size=rows).astype(np.int64)
    return logits, labels


def code_of(call):
    """The status of a call made with `call()`: (code, details)."""
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details()
    return C.OK, ""


def expect_refused(call, code, *message_has):
    got, details = code_of(call)
    assert got == code, f"{got}: {details}"
    for text in message_has:
        assert text in details, f"{text!r} not in {details!r}"


def assert_answers_exactly(stub, tmp_path, seed=99):
    """A good call after the bad ones: the report of the in-process engine, exactly."""
    logits, labels = good_data(rows=300, classes=7, seed=seed)
    config = pb.EvaluationConfig(num_classes=7, num_bins=12, top_k=[1, 2], classwise=True,
                                 fit_temperature=True, bootstrap_samples=16, seed=5)
    chunks = [batch(logits[i:i + 64], labels[i:i + 64]) for i in range(0, 300, 64)]
    streamed = stub.EvaluateStream(stream_messages(config, chunks), timeout=TIMEOUT_S)
    expected = reference_report(tmp_path, logits, labels, "--bins", "12", "--top-k", "1,2",
                                "--classwise", "--fit-temperature", "--bootstrap", "16",
                                "--seed", "5")
    assert same_report(streamed.report, expected)


# --- the status table: (config, batch, code, substrings of the message) -----------------

def table_rows():
    logits, labels = good_data(rows=4, classes=3)
    good = batch(logits, labels)

    def cfg(**fields):
        return pb.EvaluationConfig(**{"num_classes": 3, **fields})

    nan, inf, neg_inf = logits.copy(), logits.copy(), logits.copy()
    nan[1, 2], inf[2, 0], neg_inf[3, 1] = np.nan, np.inf, -np.inf
    probs = np.full((4, 3), 1 / 3, dtype=np.float64)
    over = probs.copy()
    over[2] = [0.5, 0.5, 0.5]
    negative = probs.copy()
    negative[1] = [-0.25, 0.75, 0.5]
    ignored = labels.copy()
    ignored[:] = -100
    return [
        ("num_classes 0", cfg(num_classes=0), good, C.INVALID_ARGUMENT,
         ["config.num_classes", "0"]),
        ("SOFTMAX with one class", cfg(num_classes=1, activation=pb.ACTIVATION_SOFTMAX),
         good, C.INVALID_ARGUMENT, ["config.num_classes", "1"]),
        ("unknown activation", cfg(activation=7), good, C.INVALID_ARGUMENT,
         ["config.activation", "7"]),
        ("unknown input_kind", cfg(input_kind=11), good, C.INVALID_ARGUMENT,
         ["config.input_kind", "11"]),
        ("unknown bin_edges", cfg(bin_edges=-3), good, C.INVALID_ARGUMENT,
         ["config.bin_edges", "-3"]),
        ("unknown binary_reliability", cfg(binary_reliability=12), good,
         C.INVALID_ARGUMENT, ["config.binary_reliability", "12"]),
        ("num_bins 10001", cfg(num_bins=10_001), good, C.INVALID_ARGUMENT,
         ["config.num_bins", "10001", "10000"]),
        ("top_k 0", cfg(top_k=[1, 0]), good, C.INVALID_ARGUMENT, ["config.top_k", "0"]),
        ("top_k over C", cfg(top_k=[4]), good, C.INVALID_ARGUMENT,
         ["config.top_k", "4", "num_classes = 3"]),
        ("confidence_level 1", cfg(confidence_level=1.0), good, C.INVALID_ARGUMENT,
         ["config.confidence_level", "1"]),
        ("float labels for SOFTMAX", cfg(),
         batch(logits, labels.astype(np.float32), labels_dtype=pb.DTYPE_FLOAT32),
         C.INVALID_ARGUMENT, ["batch.labels.dtype", "float32"]),
        ("integer logits", cfg(),
         batch(logits.astype(np.int32), labels, logits_dtype=pb.DTYPE_INT32),
         C.INVALID_ARGUMENT, ["batch.logits.dtype", "int32"]),
        ("unknown logits dtype", cfg(), pb.Batch(logits=pb.Tensor(dtype=42, data=b"\0" * 12)),
         C.INVALID_ARGUMENT, ["batch.logits.dtype", "42"]),
        ("logits not whole rows", cfg(),
         pb.Batch(logits=pb.Tensor(data=logits.tobytes()[:13]), labels=good.labels),
         C.INVALID_ARGUMENT, ["13 bytes", "12 bytes per row"]),
        ("labels count", cfg(), batch(logits, np.append(labels, 0)), C.INVALID_ARGUMENT,
         ["batch.labels", "40 bytes", "4 rows"]),
        ("NaN logit", cfg(), batch(nan, labels), C.INVALID_ARGUMENT,
         ["row 1", "column 2", "nan"]),
        ("+Inf logit", cfg(), batch(inf, labels), C.INVALID_ARGUMENT,
         ["row 2", "column 0", "inf"]),
        ("-Inf logit", cfg(), batch(neg_inf, labels), C.INVALID_ARGUMENT,
         ["row 3", "column 1", "-inf"]),
        ("label out of range", cfg(), batch(logits, np.array([0, 1, 3, 2])),
         C.INVALID_ARGUMENT, ["row 2", "is 3", "[0, 3)"]),
        ("negative label without ignore_index", cfg(), batch(logits, np.array([0, -1, 1, 2])),
         C.INVALID_ARGUMENT, ["row 1", "is -1"]),
        ("SIGMOID target 2",
         pb.EvaluationConfig(num_classes=1, activation=pb.ACTIVATION_SIGMOID),
         batch(logits[:, :1].copy(), np.array([0, 1, 2, 1])), C.INVALID_ARGUMENT,
         ["row 2", "is 2", "0 or 1"]),
        ("PROBABILITIES summing to 1.5", cfg(input_kind=pb.INPUT_KIND_PROBABILITIES),
         batch(over, labels, logits_dtype=pb.DTYPE_FLOAT64), C.INVALID_ARGUMENT,
         ["row 2", "1.5"]),
        ("negative PROBABILITY", cfg(input_kind=pb.INPUT_KIND_PROBABILITIES),
         batch(negative, labels, logits_dtype=pb.DTYPE_FLOAT64), C.INVALID_ARGUMENT,
         ["row 1", "column 0", "-0.25"]),
        ("no samples", cfg(), pb.Batch(), C.INVALID_ARGUMENT, ["no samples"]),
        ("everything ignored", cfg(ignore_index=-100), batch(logits, ignored),
         C.INVALID_ARGUMENT, ["no samples", "ignore_index -100"]),
        ("over --max-classes", cfg(num_classes=MAX_CLASSES + 1), good,
         C.RESOURCE_EXHAUSTED, [str(MAX_CLASSES + 1), f"limit of {MAX_CLASSES}",
                                "--max-classes"]),
        ("num_classes 2^31-1", cfg(num_classes=2**31 - 1, classwise=True), good,
         C.RESOURCE_EXHAUSTED, [str(2**31 - 1), "--max-classes"]),
        ("num_classes 2^32-1", cfg(num_classes=2**32 - 1), good, C.RESOURCE_EXHAUSTED,
         [str(2**32 - 1), "--max-classes"]),
        ("num_bins 2^32-1", cfg(num_bins=2**32 - 1), good, C.INVALID_ARGUMENT,
         ["config.num_bins", str(2**32 - 1)]),
        ("top_k 2^32-1", cfg(top_k=[2**32 - 1]), good, C.INVALID_ARGUMENT,
         ["config.top_k", str(2**32 - 1)]),
        ("bootstrap 2^32-1", cfg(bootstrap_samples=2**32 - 1), good, C.INVALID_ARGUMENT,
         ["config.bootstrap_samples", str(2**32 - 1)]),
        ("over --max-rows", pb.EvaluationConfig(num_classes=2),
         batch(np.zeros((MAX_ROWS + 1, 2), np.float32), np.zeros(MAX_ROWS + 1, np.int64)),
         C.RESOURCE_EXHAUSTED, [str(MAX_ROWS + 1), f"limit of {MAX_ROWS} rows",
                                "--max-rows"]),
        ("over --max-message-bytes", cfg(),
         pb.Batch(logits=pb.Tensor(data=bytes(MAX_MESSAGE_BYTES))), C.RESOURCE_EXHAUSTED,
         [str(MAX_MESSAGE_BYTES)]),
    ]


TABLE = table_rows()


@pytest.mark.parametrize("name,config,bad_batch,code,message_has", TABLE,
                         ids=[row[0] for row in TABLE])
def test_status_table_through_evaluate(stub, name, config, bad_batch, code, message_has):
    request = pb.EvaluateRequest(config=config, batch=bad_batch)
    expect_refused(lambda: stub.Evaluate(request, timeout=TIMEOUT_S), code, *message_has)


@pytest.mark.parametrize("name,config,bad_batch,code,message_has", TABLE,
                         ids=[row[0] for row in TABLE])
def test_status_table_through_stream(stub, name, config, bad_batch, code, message_has):
    expect_refused(
        lambda: stub.EvaluateStream(stream_messages(config, [bad_batch]),
                                    timeout=TIMEOUT_S), code, *message_has)


def test_missing_config_in_evaluate(stub):
    logits, labels = good_data()
    expect_refused(lambda: stub.Evaluate(pb.EvaluateRequest(batch=batch(logits, labels)),
                                         timeout=TIMEOUT_S),
                   C.INVALID_ARGUMENT, "config is missing")


def test_stream_order(stub):
    logits, labels = good_data()
    config = pb.EvaluationConfig(num_classes=5)
    as_config = pb.EvaluateStreamRequest(config=config)
    as_batch = pb.EvaluateStreamRequest(batch=batch(logits, labels))

    def call(*messages):
        return lambda: stub.EvaluateStream(iter(messages), timeout=TIMEOUT_S)

    expect_refused(call(as_batch, as_config), C.FAILED_PRECONDITION,
                   "first message", "config")
    expect_refused(call(as_config, as_batch, as_config), C.FAILED_PRECONDITION,
                   "message 3", "second config")
    expect_refused(call(as_config, as_config), C.FAILED_PRECONDITION, "second config")
    expect_refused(call(), C.FAILED_PRECONDITION, "without a config")
    expect_refused(call(pb.EvaluateStreamRequest(), as_batch), C.FAILED_PRECONDITION,
                   "first message")
    expect_refused(call(as_config, as_batch, pb.EvaluateStreamRequest()),
                   C.INVALID_ARGUMENT, "message 3", "neither")
    # Config then half-close: a stream cut short after its config has no samples.
    expect_refused(call(as_config), C.INVALID_ARGUMENT, "no samples")


def test_max_rows_counts_over_the_stream(stub):
    half = MAX_ROWS // 2 + 1
    rows = batch(np.zeros((half, 2), np.float32), np.zeros(half, np.int64))
    expect_refused(
        lambda: stub.EvaluateStream(
            stream_messages(pb.EvaluationConfig(num_classes=2), [rows, rows]),
            timeout=TIMEOUT_S),
        C.RESOURCE_EXHAUSTED, f"brings the evaluation to {2 * half} rows", "--max-rows")


@pytest.mark.skipif(sanitized(), reason="ASan's operator new reports an impossible size "
                    "and aborts where glibc's throws std::bad_alloc, whatever "
                    "allocator_may_return_null says")
def test_unlimited_server_refuses_what_it_cannot_allocate(tmp_path):
    """Without --max-classes, classwise bins for 2^32-1 classes x 10,000 bins (over a
    petabyte) cannot be allocated: that call ends RESOURCE_EXHAUSTED, and only it."""
    server = Calibd("--threads", "2")
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.CalibrationServiceStub(channel)
            config = pb.EvaluationConfig(num_classes=2**32 - 1, num_bins=10_000,
                                         classwise=True)
            expect_refused(lambda: stub.EvaluateStream(stream_messages(config, []),
                                                       timeout=TIMEOUT_S),
                           C.RESOURCE_EXHAUSTED)
            assert_answers_exactly(stub, tmp_path, seed=12)
    finally:
        assert server.stop() == 0, server.log()[-4000:]


# --- bytes that are not the message the method takes ------------------------------------

def malformed_requests():
    logits, labels = good_data(rows=8)
    valid = pb.EvaluateRequest(config=pb.EvaluationConfig(num_classes=5),
                               batch=batch(logits, labels)).SerializeToString()
    rng = np.random.default_rng(7)
    return {
        "truncated message": valid[:len(valid) // 2],
        "truncated varint": b"\x10\xff\xff",
        "length past the end": b"\x12\xff\xff\xff\xff\x07\x0a\x00",
        "declared length 2^31": b"\x12" + _VarintBytes(2**31) + b"\x0a\x02",
        "group never ended": b"\x0b\x10\x01",
        "field number 0": b"\x00\x01",
        "end group without start": b"\x0c",
        "random bytes": rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes(),
        "groups nested past the recursion limit": b"\x9b\x06" * 200,
    }


MALFORMED = malformed_requests()


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_protobuf_bytes(channel, stub, name):
    raw = MALFORMED[name]
    # Identity serializers: the bytes go on the wire as they are. calibd parses a unary
    # request itself (gRPC 1.51 would end it UNIMPLEMENTED with no message).
    unary = channel.unary_unary(SERVICE + "Evaluate")
    code, details = code_of(lambda: unary(raw, timeout=TIMEOUT_S))
    assert code == C.INVALID_ARGUMENT, f"{code}: {details}"
    assert details == "the request does not parse as a calib.v1.EvaluateRequest"
    # In a stream the service sees the failed read, and must not take it for the end of
    # the stream: wherever the bad message comes, the call fails and names it.
    config = pb.EvaluateStreamRequest(
        config=pb.EvaluationConfig(num_classes=5)).SerializeToString()
    logits, labels = good_data(rows=8)
    rows = pb.EvaluateStreamRequest(batch=batch(logits, labels)).SerializeToString()
    streaming = channel.stream_unary(SERVICE + "EvaluateStream")
    for messages, position in (([raw], 1), ([config, raw], 2), ([config, rows, raw], 3),
                               ([config, rows, raw, rows], 3)):
        code, details = code_of(lambda: streaming(iter(messages), timeout=TIMEOUT_S))
        assert code == C.INVALID_ARGUMENT, f"{code}: {details}"
        assert f"message {position} of the stream does not parse" in details
    assert stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=TIMEOUT_S).version


def test_unknown_fields_are_skipped(channel, stub, tmp_path):
    logits, labels = good_data(rows=30)
    request = pb.EvaluateRequest(config=pb.EvaluationConfig(num_classes=5, num_bins=8),
                                 batch=batch(logits, labels)).SerializeToString()
    # Field 99 (varint) and field 100 (bytes) in the request: a newer client's fields.
    extended = request + b"\x98\x06\x2a" + b"\xa2\x06\x03abc"
    unary = channel.unary_unary(SERVICE + "Evaluate",
                                response_deserializer=pb.EvaluateResponse.FromString)
    response = unary(extended, timeout=TIMEOUT_S)
    assert same_report(response.report,
                       reference_report(tmp_path, logits, labels, "--bins", "8"))


# --- what is not gRPC at all --------------------------------------------------------------

def raw_exchange(address, payload, read_timeout_s=5):
    """Sends `payload` on a fresh TCP connection, reads what comes back until the server
    closes or goes quiet, closes. Returns the bytes read."""
    host, port = address.rsplit(":", 1)
    received = b""
    with socket.create_connection((host, int(port)), timeout=read_timeout_s) as sock:
        if payload:
            sock.sendall(payload)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return received


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def test_raw_garbage_on_the_port(calibd, stub, tmp_path):
    rng = np.random.default_rng(3)
    payloads = {
        "random bytes": rng.integers(0, 256, size=65536, dtype=np.uint8).tobytes(),
        "HTTP/1.1 request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "TLS client hello": bytes.fromhex("16030100a501000000a10303") + bytes(160),
        "preface then garbage": H2_PREFACE + rng.integers(0, 256, size=4096,
                                                          dtype=np.uint8).tobytes(),
        # A HEADERS frame of 2^24-1 bytes announced, 9 sent.
        "frame longer than sent": H2_PREFACE + b"\xff\xff\xff\x01\x04\x00\x00\x00\x01"
                                  + bytes(9),
        "half a preface": H2_PREFACE[:10],
        "nothing": b"",
    }
    for name, payload in payloads.items():
        raw_exchange(calibd.address, payload, read_timeout_s=2)
    # Many connections opened and dropped at once.
    host, port = calibd.address.rsplit(":", 1)
    sockets = [socket.create_connection((host, int(port))) for _ in range(64)]
    for sock in sockets:
        sock.close()
    assert stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=TIMEOUT_S).max_rows == MAX_ROWS
    assert_answers_exactly(stub, tmp_path, seed=11)


# --- streams cut short ----------------------------------------------------------------------

def test_cancelled_streams_end_alone(calibd, stub):
    logits, labels = good_data(rows=64)
    cancelled_before = calibd.count_in_log("status=CANCELLED")
    sent = []

    def endless():
        yield pb.EvaluateStreamRequest(config=pb.EvaluationConfig(num_classes=5))
        while True:
            sent.append(1)
            yield pb.EvaluateStreamRequest(batch=batch(logits, labels))
            time.sleep(0.01)

    # Cancelled by the client mid-stream.
    future = stub.EvaluateStream.future(endless(), timeout=TIMEOUT_S)
    while len(sent) < 5:
        time.sleep(0.01)
    future.cancel()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    # A deadline passing mid-stream.
    code, _ = code_of(lambda: stub.EvaluateStream(endless(), timeout=0.5))
    assert code == C.DEADLINE_EXCEEDED
    # The client process dying mid-stream: its connection just closes.
    client = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, grpc
        from calib_client.stubs import calibration_pb2 as pb, calibration_pb2_grpc as g
        def messages():
            yield pb.EvaluateStreamRequest(config=pb.EvaluationConfig(num_classes=2))
            while True:
                yield pb.EvaluateStreamRequest(batch=pb.Batch(logits=pb.Tensor(
                    data=bytes(8 * 100)), labels=pb.Tensor(data=bytes(8 * 100))))
                print("sent", flush=True)
                time.sleep(0.01)
        g.CalibrationServiceStub(grpc.insecure_channel("{calibd.address}")
                                 ).EvaluateStream(messages())
        """)], stdout=subprocess.PIPE, text=True)
    for _ in range(5):
        assert client.stdout.readline() == "sent\n"
    client.send_signal(signal.SIGKILL)
    client.wait()
    client.stdout.close()
    # All three ended on the server, each logged as cancelled.
    assert calibd.wait_for_log(r"status=CANCELLED", TIMEOUT_S,
                               count=cancelled_before + 3) is not None, calibd.log()[-3000:]


# --- after all of it -------------------------------------------------------------------------

def health_check(channel, service=""):
    """grpc.health.v1.Health/Check as raw bytes (no Python health stubs in Debian):
    HealthCheckRequest{service} is field 1, the response's status is field 1 (varint)."""
    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    request = b"\x0a" + _VarintBytes(len(service)) + service.encode() if service else b""
    return check(request, timeout=TIMEOUT_S)


SERVING = b"\x08\x01"


# Named to run last in this file: the server after the whole matrix.
def test_zz_after_the_matrix_serving_and_exact(calibd, channel, stub, tmp_path):
    assert health_check(channel) == SERVING
    assert health_check(channel, "calib.v1.CalibrationService") == SERVING
    assert_answers_exactly(stub, tmp_path)
    assert "calibd call method=" in calibd.log()
    assert calibd.proc.poll() is None
