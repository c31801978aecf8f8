"""The Python client (client/python/calib_client) against a real calibd.

Each report is compared with `calib eval --json` run in-process on the same data saved
as .npy: the client streams to calibd, the CLI calls the engine directly, and the
contract says both give the same numbers, so the dicts must be equal exactly. Tests
that need torch skip when it is missing. TLS, mutual TLS and the bearer token are checked
against calibd in tests/tls_auth_test.py.

Needs CALIB_BIN, CALIBD_BIN and PYTHONPATH=<build>/python (ctest sets all three);
calibd is started by tests/calibd_process.py.
"""

import json
import math
import os
import pathlib
import re
import subprocess
import sys

import grpc
import numpy as np
import pytest

import calib_client
from calibd_process import Calibd, reference_json

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def server():
    """A calibd on 127.0.0.1 with a port of the kernel's choosing."""
    calibd = Calibd()
    yield calibd.address
    calibd.stop()


def from_json(value):
    """`calib eval --json` as plain numbers: the JSON mapping writes 64-bit integers as
    strings and non-finite doubles as "NaN" / "Infinity"; NaN becomes a marker so that
    dicts holding it can compare equal."""
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if value in ("NaN", "Infinity", "-Infinity"):
        return from_json(float(value))
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def cli_report(tmp_path, logits, labels, *flags):
    """The in-process CLI's report on arrays saved with np.save."""
    return from_json(json.loads(reference_json(tmp_path, logits, labels, *flags)))


def as_dict(report):
    return from_json(report.to_dict())


def digits():
    return (np.load(EXAMPLES / "digits_logits.npy"), np.load(EXAMPLES / "digits_labels.npy"))


def test_numpy_float32_equals_the_cli(server, tmp_path):
    logits, labels = digits()
    assert logits.dtype == np.float32 and logits.ndim == 2
    report = calib_client.evaluate(
        logits, labels, server=server, num_bins=10, top_k=(1, 3), classwise=True,
        fit_temperature=True, bootstrap_samples=20, confidence_level=0.9, seed=7,
        bin_edges="left_closed", smooth_ece=True)
    expected = cli_report(tmp_path, logits, labels, "--bins", "10", "--top-k", "1,3",
                          "--classwise", "--fit-temperature", "--bootstrap", "20",
                          "--level", "0.9", "--seed", "7", "--bin-edges", "left-closed",
                          "--smooth-ece")
    assert as_dict(report) == expected
    # The typed view: optional parts present when asked, plain Python numbers.
    assert isinstance(report, calib_client.Report)
    assert isinstance(report.temperature_scaling, calib_client.TemperatureScaling)
    assert isinstance(report.temperature_scaling.calibrated, calib_client.Metrics)
    assert report.temperature_scaling.temperature > 0
    assert report.platt_scaling is None
    assert isinstance(report.intervals, calib_client.BootstrapIntervals)
    assert report.intervals.samples == 20
    assert [t.k for t in report.metrics.top_k] == [1, 3]
    assert type(report.metrics.num_samples) is int and report.metrics.num_samples == 540
    assert type(report.metrics.smooth_ece) is float
    assert all(isinstance(b, calib_client.ReliabilityBin)
               for b in report.metrics.reliability_bins)
    assert len(report.metrics.reliability_bins) == 10


def test_defaults_leave_optional_parts_unset(server, tmp_path):
    logits, labels = digits()
    report = calib_client.evaluate(logits, labels, server=server)
    assert as_dict(report) == cli_report(tmp_path, logits, labels)
    assert report.temperature_scaling is None and report.intervals is None
    assert report.metrics.classwise_ece is None and report.metrics.smooth_ece is None
    assert "temperature_scaling" not in report.to_dict()


def test_binary_one_logit_per_row_with_platt(server, tmp_path):
    logits = np.load(EXAMPLES / "breast_cancer_logits.npy")
    labels = np.load(EXAMPLES / "breast_cancer_labels.npy").astype(bool)
    assert logits.ndim == 1
    report = calib_client.evaluate(logits, labels, server=server, fit_temperature=True,
                                   binary_reliability="top_label")
    expected = cli_report(tmp_path, logits, labels, "--fit-temperature",
                          "--binary-reliability", "top-label")
    assert as_dict(report) == expected
    assert isinstance(report.platt_scaling, calib_client.PlattScaling)


def test_multilabel_sigmoid_float_targets(server, tmp_path):
    logits = np.load(FIXTURES / "multilabel_sigmoid" / "logits.npy")
    labels = np.load(FIXTURES / "multilabel_sigmoid" / "labels.npy")
    assert logits.ndim == 2 and labels.shape == logits.shape
    # The fixture marks some targets -100 (ignored); float targets carry that as well.
    targets = labels.astype(np.float64)
    report = calib_client.evaluate(logits, targets, server=server, activation="sigmoid",
                                   ignore_index=-100, classwise=True, smooth_ece=True)
    expected = cli_report(tmp_path, logits, labels, "--activation", "sigmoid",
                          "--ignore-index", "-100", "--classwise", "--smooth-ece")
    assert as_dict(report) == expected
    assert report.metrics.num_samples + report.num_ignored == labels.size


def test_torch_float16(server, tmp_path):
    torch = pytest.importorskip("torch")
    logits, labels = digits()
    half = torch.from_numpy(logits).to(torch.float16)
    report = calib_client.evaluate(half, torch.from_numpy(labels), server=server,
                                   fit_temperature=True)
    expected = cli_report(tmp_path, half.numpy(), labels, "--fit-temperature")
    assert as_dict(report) == expected


def test_torch_bfloat16_and_numpy_v2_bits(server, tmp_path):
    torch = pytest.importorskip("torch")
    logits, labels = digits()
    bf16 = torch.from_numpy(logits).to(torch.bfloat16)
    report = calib_client.evaluate(bf16, torch.from_numpy(labels), server=server)
    # The same 16-bit patterns as a '<V2' .npy (how np.save writes ml_dtypes.bfloat16),
    # read by the CLI and, as a NumPy 'V2' array, by the client's NumPy path.
    bits = bf16.view(torch.int16).numpy().view(np.dtype("V2"))
    expected = cli_report(tmp_path, bits, labels)
    assert as_dict(report) == expected
    assert as_dict(calib_client.evaluate(bits, labels, server=server)) == expected
    # bfloat16 keeps 8 bits of mantissa: the accuracy differs from float32's at most by
    # the rows whose top two logits round to a tie or swap.
    exact = calib_client.evaluate(logits, labels, server=server)
    assert abs(report.metrics.accuracy - exact.metrics.accuracy) < 0.02


def test_torch_sequence_logits_with_ignore_index(server, tmp_path):
    torch = pytest.importorskip("torch")
    logits, labels = digits()
    sequence_logits = torch.from_numpy(logits).reshape(4, 135, 10)
    sequence_labels = torch.from_numpy(labels).reshape(4, 135).clone()
    sequence_labels[:, -5:] = -100  # padding
    sequence_labels[1, ::7] = -100
    report = calib_client.evaluate(sequence_logits, sequence_labels, server=server,
                                   ignore_index=-100, top_k=5)
    expected = cli_report(tmp_path, sequence_logits.numpy(), sequence_labels.numpy(),
                          "--ignore-index", "-100", "--top-k", "5")
    assert as_dict(report) == expected
    ignored = int((sequence_labels == -100).sum())
    assert report.num_ignored == ignored and report.metrics.num_samples == 540 - ignored


def test_torch_tensor_needing_grad_and_not_contiguous(server):
    torch = pytest.importorskip("torch")
    logits, labels = digits()
    # A transposed copy, transposed back: the same values in a column-major layout.
    strided = torch.from_numpy(logits.T.copy()).t().requires_grad_()
    assert not strided.is_contiguous()
    report = calib_client.evaluate(strided, torch.from_numpy(labels).int(), server=server)
    assert as_dict(report) == as_dict(calib_client.evaluate(logits, labels, server=server))


class CountingInterceptor(grpc.StreamUnaryClientInterceptor):
    """Counts the messages of every client stream and records the call metadata."""

    def __init__(self):
        self.messages = 0
        self.metadata = None

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        self.metadata = client_call_details.metadata

        def counted():
            for request in request_iterator:
                self.messages += 1
                yield request

        return continuation(client_call_details, counted())


def test_chunking_sends_whole_rows_and_gives_the_same_report(server):
    logits, labels = digits()
    reports = {}
    for chunk_bytes, messages in [(calib_client.DEFAULT_CHUNK_BYTES, 1 + 1),
                                  (1, 1 + 540),  # at least one row per message
                                  (3 * (40 + 8) + 47, 1 + 180)]:  # 3 rows of 48 bytes
        counter = CountingInterceptor()
        with calib_client.Client(server, chunk_bytes=chunk_bytes,
                                 interceptors=[counter]) as client:
            reports[chunk_bytes] = as_dict(client.evaluate(logits, labels,
                                                           fit_temperature=True))
        assert counter.messages == messages, chunk_bytes
    assert len({json.dumps(r, sort_keys=True) for r in reports.values()}) == 1


def test_a_stream_writes_its_messages_to_pages_already_mapped(server):
    """Each message's memory (its bytes, gRPC's copy) is freed before long; glibc must
    keep it for the next message rather than hand it back, or every message lands on
    fresh pages. One malloc arena (GLIBC_TUNABLES) makes the bad order happen on every
    call; without calib_client.allocator the second call below took ~9,500 page
    faults, about one per page of its 40 MB, and with it under 10."""
    code = f"""
import resource, numpy as np, calib_client
logits = np.random.default_rng(0).standard_normal((10_000, 1_000), dtype=np.float32)
labels = np.arange(10_000) % 1_000
with calib_client.Client({server!r}, chunk_bytes=2 << 20) as client:
    client.evaluate(logits, labels)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    client.evaluate(logits, labels)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.arena_max=1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env)
    assert done.returncode == 0, done.stderr
    pages = 10_000 * 1_000 * 4 // 4096
    assert int(done.stdout) < pages // 10, done.stdout


def test_server_info_and_health(server):
    with calib_client.Client(server) as client:
        info = client.server_info()
        assert isinstance(info, calib_client.ServerInfo)
        assert re.fullmatch(r"\d+\.\d+\.\d+", info.version)
        assert info.max_message_bytes > 0
        # calibd's defaults (README, "Limits and memory").
        assert info.memory_budget_bytes == 1 << 30
        assert info.fit_store_bytes == 256 << 20
        assert info.max_concurrent_evaluations == 0
        assert client.health() == "SERVING"
        assert client.health("calib.v1.CalibrationService") == "SERVING"


def test_label_out_of_range_is_invalid_argument_naming_the_row(server):
    logits, labels = digits()
    labels = labels.copy()
    labels[123] = 10
    with pytest.raises(calib_client.CalibError) as caught:
        calib_client.evaluate(logits, labels, server=server)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "123" in caught.value.details and "10" in caught.value.details
    assert caught.value.details in str(caught.value)


def test_unreachable_server_is_a_calib_error(tmp_path):
    logits, labels = digits()
    with pytest.raises(calib_client.CalibError) as caught:
        calib_client.evaluate(logits, labels, server=f"unix:{tmp_path}/nobody", timeout=10)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def test_unknown_option_is_a_type_error_naming_it():
    logits, labels = digits()
    with pytest.raises(TypeError, match="num_bin, tempature"):
        calib_client.evaluate(logits, labels, server="127.0.0.1:1", num_bin=10,
                              tempature=True)


def test_bad_option_values_name_the_option():
    logits, labels = digits()
    with pytest.raises(ValueError, match=r"activation='softmaxx'.*'softmax', 'sigmoid'"):
        calib_client.evaluate(logits, labels, server="127.0.0.1:1", activation="softmaxx")
    with pytest.raises(TypeError, match="num_bins='15'"):
        calib_client.evaluate(logits, labels, server="127.0.0.1:1", num_bins="15")


def test_inputs_the_contract_cannot_carry_fail_before_sending():
    logits, labels = digits()
    with pytest.raises(TypeError, match="logits have dtype int64"):
        calib_client.evaluate(logits.astype(np.int64), labels, server="127.0.0.1:1")
    with pytest.raises(ValueError, match="539 labels"):
        calib_client.evaluate(logits, labels[:-1], server="127.0.0.1:1")


def test_the_package_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; import calib_client; "
            "import numpy as np; assert calib_client.OPTIONS")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr


def test_token_without_tls_is_sent_as_metadata(server):
    counter = CountingInterceptor()
    with calib_client.Client(server, token="abc", interceptors=[counter]) as client:
        logits, labels = digits()
        client.evaluate(logits, labels)
    assert ("authorization", "Bearer abc") in counter.metadata


def test_pytorch_example_runs(server):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "pytorch_eval_loop.py"), "--server", server],
        capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^540 held-out digits: accuracy 0\.\d+, ECE 0\.\d+", done.stdout,
                     re.MULTILINE), done.stdout
    assert re.search(r"^temperature \d+\.\d+: ECE", done.stdout, re.MULTILINE), done.stdout
