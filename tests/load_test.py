"""Load: rounds of 48 concurrent EvaluateStream calls against one calibd --threads 2,
mixing good calls (half), bad ones, ones the client cancels mid-stream and ones whose
deadline passes mid-stream. Every good call must equal the in-process report exactly
(`calib eval --json` without a server) whatever its batching; every other call must end
with its own code. Afterwards the server is SERVING, answers exactly, and its resident
memory is back near the level measured after a warm-up round (see RSS_MARGIN_*); at
SIGTERM it exits 0, which in the sanitizer build also means LeakSanitizer found nothing.

Needs CALIBD_BIN, CALIB_BIN and PYTHONPATH=<build>/python (ctest sets them).
"""

import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest

from calib_client.stubs import calibration_pb2 as pb
from calib_client.stubs import calibration_pb2_grpc as pb_grpc
from calibd_process import (Calibd, batch, reference_report, same_report, sanitized,
                            stream_messages)

C = grpc.StatusCode
STREAMS = 48
CHANNELS = 4
MAX_CLASSES = 4096
TIMEOUT_S = 120
DEADLINE_S = 1.0  # for the calls meant to expire: they never half-close
# The sanitizer build is several times slower: fewer rows and one round of each kind.
ROWS = 5_000 if sanitized() else 20_000
WARMUP_ROUNDS = 1 if sanitized() else 2
ROUNDS = 1 if sanitized() else 6
# Resident memory after the measured rounds may exceed the level after the warm-up by
# RSS_MARGIN_KIB + RSS_MARGIN_FRACTION of it. RSS does not return to the pre-load level:
# glibc keeps freed blocks in its per-thread arenas, gRPC its buffers and threads; it
# levels off once rounds of the same peak have run, then moves with where the peak
# blocks fell. Measured (release, 2 cores): 17 MB idle, 32 MB after one round, then
# 37-47 MB over nine more, each round sending 22 MB of requests. So the margin takes
# that 10 MB wobble, while a leak of a fifth of the request bytes of the six measured
# rounds (26 MB) would exceed it. Smaller leaks, of per-call objects, are for
# LeakSanitizer: calibd must exit 0 in the sanitizer build, where RSS is not checked
# since ASan's quarantine keeps freed memory resident by design.
RSS_MARGIN_KIB = 16 * 1024
RSS_MARGIN_FRACTION = 0.10

DATASETS = [
    # (classes, config fields, the same options as `calib eval` flags)
    (10, dict(), []),
    (10, dict(num_bins=20, top_k=[1, 5], classwise=True),
     ["--bins", "20", "--top-k", "1,5", "--classwise"]),
    (4, dict(fit_temperature=True, smooth_ece=True), ["--fit-temperature", "--smooth-ece"]),
    (3, dict(bootstrap_samples=25, seed=11, confidence_level=0.9),
     ["--bootstrap", "25", "--seed", "11", "--level", "0.9"]),
    (1, dict(activation=pb.ACTIVATION_SIGMOID, fit_temperature=True),
     ["--activation", "sigmoid", "--fit-temperature"]),
    (6, dict(ignore_index=-100, bin_edges=pb.BIN_EDGES_LEFT_CLOSED),
     ["--ignore-index", "-100", "--bin-edges", "left-closed"]),
]


class Dataset:
    def __init__(self, index, tmp_path):
        classes, fields, flags = DATASETS[index]
        rng = np.random.default_rng(1000 + index)
        rows = ROWS // 2 if classes < 5 else ROWS
        shape = (rows, classes) if classes > 1 else (rows,)
        self.logits = (rng.normal(size=shape) * 2).astype(np.float32)
        self.labels = rng.integers(0, max(classes, 2), size=rows).astype(np.int64)
        if "ignore_index" in fields:
            self.labels[::7] = -100
        self.config = pb.EvaluationConfig(num_classes=classes, **fields)
        self.expected = reference_report(tmp_path, self.logits, self.labels, *flags)
        self.rows = rows

    def batches(self, rng):
        """The rows cut at random points: the report may not depend on where."""
        cuts = np.sort(rng.integers(0, self.rows, size=rng.integers(1, 12)))
        bounds = [0, *cuts.tolist(), self.rows]
        return [batch(self.logits[a:b], self.labels[a:b])
                for a, b in zip(bounds, bounds[1:])]


def bad_calls(data):
    """(messages, code, a substring of the message) for the bad streams."""
    d = data[0]
    z, y = d.logits[:100], d.labels[:100]
    nan = z.copy()
    nan[37, 4] = np.nan
    wrong = y.copy()
    wrong[60] = 10
    as_config = pb.EvaluateStreamRequest(config=d.config)
    return [
        (list(stream_messages(d.config, [batch(z, y), batch(z, wrong)])),
         C.INVALID_ARGUMENT, "row 160"),
        (list(stream_messages(d.config, [batch(nan, y)])), C.INVALID_ARGUMENT,
         "row 37, column 4"),
        ([pb.EvaluateStreamRequest(batch=batch(z, y)), as_config], C.FAILED_PRECONDITION,
         "first message"),
        (list(stream_messages(d.config, [batch(z, y)])) + [as_config],
         C.FAILED_PRECONDITION, "second config"),
        (list(stream_messages(pb.EvaluationConfig(num_classes=10, num_bins=20_000), [])),
         C.INVALID_ARGUMENT, "config.num_bins"),
        (list(stream_messages(pb.EvaluationConfig(num_classes=MAX_CLASSES + 1), [])),
         C.RESOURCE_EXHAUSTED, "--max-classes"),
    ]


@pytest.fixture(scope="module")
def calibd():
    server = Calibd("--threads", "2", "--max-classes", str(MAX_CLASSES))
    yield server
    assert server.stop() == 0, server.log()[-4000:]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return [Dataset(i, tmp_path_factory.mktemp(f"data{i}")) for i in range(len(DATASETS))]


def endless(data, sent, stop):
    """A config, then batches until the call ends (stop is set) – never a half-close."""
    yield pb.EvaluateStreamRequest(config=data.config)
    z, y = data.logits[:500], data.labels[:500]
    while not stop.is_set():
        yield pb.EvaluateStreamRequest(batch=batch(z, y))
        sent.release()
        time.sleep(0.005)


def run_round(stubs, data, seed):
    """One round of STREAMS concurrent calls. Returns a list of failures (empty if all
    calls ended as they should)."""
    rng = np.random.default_rng(seed)
    bad = bad_calls(data)
    jobs = []
    for i in range(STREAMS):
        kind = ("good" if i % 2 == 0 else
                ("bad", "bad", "cancel", "deadline")[(i // 2) % 4])
        jobs.append((i, kind, stubs[i % len(stubs)], int(rng.integers(1 << 30))))

    def one(job):
        i, kind, stub, job_seed = job
        job_rng = np.random.default_rng(job_seed)
        if kind == "good":
            d = data[i % len(data)]
            response = stub.EvaluateStream(stream_messages(d.config, d.batches(job_rng)),
                                           timeout=TIMEOUT_S)
            if not same_report(response.report, d.expected):
                return f"call {i}: the report differs from the in-process one"
            return None
        if kind == "bad":
            messages, code, text = bad[(i // 2) % len(bad)]
            try:
                stub.EvaluateStream(iter(messages), timeout=TIMEOUT_S)
            except grpc.RpcError as error:
                if error.code() != code or text not in error.details():
                    return f"call {i}: {error.code()} {error.details()!r}, not {code} {text!r}"
                return None
            return f"call {i}: a bad call succeeded"
        sent, stop = threading.Semaphore(0), threading.Event()
        d = data[i % len(data)]
        try:
            if kind == "cancel":
                call = stub.EvaluateStream.future(endless(d, sent, stop), timeout=TIMEOUT_S)
                for _ in range(3):
                    sent.acquire()
                call.cancel()
                try:
                    call.result()
                except grpc.FutureCancelledError:
                    return None
                return f"call {i}: not cancelled"
            try:
                stub.EvaluateStream(endless(d, sent, stop), timeout=DEADLINE_S)
            except grpc.RpcError as error:
                if error.code() != C.DEADLINE_EXCEEDED:
                    return f"call {i}: {error.code()}, not DEADLINE_EXCEEDED"
                return None
            return f"call {i}: an endless stream succeeded"
        finally:
            stop.set()

    with futures.ThreadPoolExecutor(max_workers=STREAMS) as pool:
        return [f for f in pool.map(one, jobs) if f is not None]


def calls_logged(calibd):
    return calibd.count_in_log("calibd call method=EvaluateStream")


def wait_until_logged(calibd, count):
    """Every call the server took has ended on its side too (its log line written)."""
    deadline = time.monotonic() + TIMEOUT_S
    while calls_logged(calibd) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls_logged(calibd) >= count, calibd.log()[-3000:]


def test_mixed_load_exact_and_memory_back(calibd, data):
    channels = [grpc.insecure_channel(calibd.address) for _ in range(CHANNELS)]
    stubs = [pb_grpc.CalibrationServiceStub(c) for c in channels]
    try:
        # Warm-up: full rounds, so that thread pools and allocator arenas reach the
        # peak the measured rounds will have too.
        for r in range(WARMUP_ROUNDS):
            assert run_round(stubs, data, seed=r) == []
        wait_until_logged(calibd, STREAMS * WARMUP_ROUNDS)
        baseline = calibd.rss_kib()
        for r in range(WARMUP_ROUNDS, WARMUP_ROUNDS + ROUNDS):
            assert run_round(stubs, data, seed=r) == []
        wait_until_logged(calibd, STREAMS * (WARMUP_ROUNDS + ROUNDS))
        after = calibd.rss_kib()
        print(f"calibd VmRSS: {baseline} KiB after the warm-up, {after} KiB after "
              f"{ROUNDS} rounds of {STREAMS} streams")

        check = channels[0].unary_unary("/grpc.health.v1.Health/Check")
        assert check(b"", timeout=TIMEOUT_S) == b"\x08\x01"  # status: SERVING
        d = data[1]
        response = stubs[1].EvaluateStream(
            stream_messages(d.config, d.batches(np.random.default_rng(5))),
            timeout=TIMEOUT_S)
        assert same_report(response.report, d.expected)
        if not sanitized():
            limit = baseline * (1 + RSS_MARGIN_FRACTION) + RSS_MARGIN_KIB
            assert after <= limit, f"VmRSS {after} KiB > {limit:.0f} KiB"
    finally:
        for c in channels:
            c.close()
