"""Helpers shared by the pytest files that drive a real calibd: start one on 127.0.0.1
with a port of the kernel's choosing, read its call log, its resident memory and its
exit status; and the in-process reference report of `calib eval --json`.

Not a test file (no _test suffix): pytest puts tests/ on sys.path, so the tests import
it by name. Needs CALIBD_BIN, CALIB_BIN and PYTHONPATH=<build>/python (ctest sets them).
"""

import os
import re
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from google.protobuf import json_format

from calib_client.stubs import calibration_pb2 as pb

START_TIMEOUT_S = 60
CLI_TIMEOUT_S = 300


def required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: point it at the built binary (ctest sets it)")
    return value


def sanitized():
    """True in the AddressSanitizer build (tests/CMakeLists.txt sets it), where every
    call is several times slower and freed memory stays resident in ASan's quarantine."""
    return os.environ.get("CALIB_SANITIZED") == "1"


class Calibd:
    """One calibd process. Its stdout and stderr (the call log) are drained by a thread
    into `self.log`, so the server never blocks on a full pipe."""

    def __init__(self, *flags):
        self.proc = subprocess.Popen(
            [required_env("CALIBD_BIN"), "--listen", "127.0.0.1:0", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._lines = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        found = self.wait_for_log(r"calibd listening on \S+:(\d+)", START_TIMEOUT_S)
        if found is None:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("calibd did not start listening:\n" + self.log())
        self.address = f"127.0.0.1:{found.group(1)}"

    def _pump(self):
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._lines.append(None)
            self._cond.notify_all()

    def log(self):
        with self._cond:
            return "".join(line for line in self._lines if line is not None)

    def wait_for_log(self, pattern, timeout_s, count=1):
        """The count-th match of `pattern` in the log, waiting up to timeout_s for it."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                text = "".join(line for line in self._lines if line is not None)
                matches = list(re.finditer(pattern, text))
                if len(matches) >= count:
                    return matches[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self._lines and self._lines[-1] is None):
                    return None
                self._cond.wait(left)

    def count_in_log(self, text):
        return self.log().count(text)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as status:
            return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1))

    def stop(self, timeout_s=60):
        """SIGTERM, then the exit status (-SIG when a signal ended it, as on an ASan
        abort). A leak found by LeakSanitizer at exit makes the status non-zero."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "did not exit within the grace period"


def reference_json(tmp_path, logits, labels, *flags):
    """What `calib eval --json` prints, run in-process (no server) on the arrays."""
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    env = {k: v for k, v in os.environ.items() if k != "CALIB_SERVER"}
    done = subprocess.run(
        [required_env("CALIB_BIN"), "eval", "--logits", str(tmp_path / "logits.npy"),
         "--labels", str(tmp_path / "labels.npy"), *flags, "--json", "-"],
        capture_output=True, timeout=CLI_TIMEOUT_S, env=env)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def reference_report(tmp_path, logits, labels, *flags):
    """The Report of `calib eval --json` run in-process (no server) on the arrays."""
    return json_format.Parse(reference_json(tmp_path, logits, labels, *flags), pb.Report())


def same_report(a, b):
    """Exact equality, NaN included: the deterministic serialization of both."""
    return (a.SerializeToString(deterministic=True) ==
            b.SerializeToString(deterministic=True))


def tensor(array, dtype):
    return pb.Tensor(dtype=dtype, data=np.ascontiguousarray(array).tobytes())


def batch(logits, labels, logits_dtype=pb.DTYPE_FLOAT32, labels_dtype=pb.DTYPE_INT64):
    return pb.Batch(logits=tensor(logits, logits_dtype),
                    labels=tensor(labels, labels_dtype))


def stream_messages(config, batches):
    yield pb.EvaluateStreamRequest(config=config)
    for b in batches:
        yield pb.EvaluateStreamRequest(batch=b)
