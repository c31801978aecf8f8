"""Horizontal scale: every evaluation lives inside one call, so any replica serves any
call. Three real calibd on loopback behind one gRPC target with the round_robin policy;
the CLI and the Python client each run many evaluations through it. Every answer must
equal the in-process one, and each server's call log must show that it served.

A CLI run is one process with one call, which goes to whichever server its new channel
reaches first; the Python client keeps one channel, over which round_robin takes the
servers in turn."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import numpy as np
import pytest

CALIB = os.environ.get("CALIB_BIN")
CALIBD = os.environ.get("CALIBD_BIN")
SOURCE = os.environ.get("CALIB_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
LOGITS = os.path.join(SOURCE, "examples", "digits_logits.npy")
LABELS = os.path.join(SOURCE, "examples", "digits_labels.npy")


def start_calibd(log):
    proc = subprocess.Popen([CALIBD, "--listen", "127.0.0.1:0", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    match = re.match(r"calibd listening on (\S+)", line)
    assert match, f"calibd did not start: {line!r}"
    return proc, match.group(1)


@pytest.fixture(scope="module")
def replicas():
    assert CALIB and CALIBD, "CALIB_BIN and CALIBD_BIN must be set"
    logs, procs, addresses = [], [], []
    for _ in range(3):
        log = tempfile.NamedTemporaryFile(mode="w+", suffix=".log")
        proc, address = start_calibd(log)
        logs.append(log)
        procs.append(proc)
        addresses.append(address)
    yield "ipv4:" + ",".join(addresses), logs
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    for log in logs:
        log.close()


def served(log, method):
    log.flush()
    with open(log.name) as f:
        return sum(1 for line in f if f"method={method} " in line and "status=OK" in line)


def served_after(logs, method, before, expected, timeout_s=30):
    """Calls of `method` each replica logged since `before`, once they add up to
    `expected` (or the timeout passes). A server logs a call when it is done with it,
    which may be a moment after its client has the answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        calls = [served(log, method) - b for log, b in zip(logs, before)]
        if sum(calls) >= expected or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


def cli_json(*extra):
    out = subprocess.run([CALIB, "eval", "--logits", LOGITS, "--labels", LABELS,
                          "--fit-temperature", "--json", "-", *extra],
                         check=True, capture_output=True, text=True)
    return out.stdout


def test_cli_calls_spread_over_all_replicas(replicas):
    target, logs = replicas
    before = [served(log, "EvaluateStream") for log in logs]
    expected = cli_json()
    for _ in range(24):
        assert cli_json("--server", target) == expected
    assert sum(served_after(logs, "EvaluateStream", before, 24)) == 24


def test_python_client_calls_spread_over_all_replicas(replicas):
    calib_client = pytest.importorskip("calib_client")
    target, logs = replicas
    expected = json.loads(cli_json())
    logits, labels = np.load(LOGITS), np.load(LABELS)
    before = [served(log, "EvaluateStream") for log in logs]
    with calib_client.Client(target) as client:
        for _ in range(30):
            report = client.evaluate(logits, labels, fit_temperature=True).to_dict()
            assert report["metrics"]["nll"] == expected["metrics"]["nll"]
            assert (report["temperature_scaling"]["temperature"] ==
                    expected["temperature_scaling"]["temperature"])
            assert report["metrics"]["ece"] == expected["metrics"]["ece"]
    calls = served_after(logs, "EvaluateStream", before, 30)
    assert sum(calls) == 30
    # round_robin over one channel takes the replicas in turn, once each is connected.
    assert all(c > 0 for c in calls), f"calls per replica: {calls}"


def test_every_replica_served(replicas):
    _, logs = replicas
    calls = [served(log, "EvaluateStream") for log in logs]
    assert all(c > 0 for c in calls), f"calls per replica: {calls}"
