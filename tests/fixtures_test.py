"""End-to-end accuracy of `calib eval` against the independent references of
tests/fixtures/ (written by tests/fixtures/generate.py from PyTorch, scikit-learn, SciPy
and float64 NumPy; see that file for how each number was made).

Every case runs three ways: in-process, streamed to a calibd started once for the
session, and streamed again one row per message (--chunk-bytes 1). The three JSON
reports must be byte-identical; then every field of expected.json is compared with the
report under the tolerances of shared/design/metrics.md. Only the standard library is
used here, so the check shares no code with the tools that made the references.

Needs CALIB_BIN and CALIBD_BIN (ctest sets both).
"""

import json
import os
import pathlib
import queue
import re
import shlex
import subprocess
import threading

import pytest

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").is_file())
RUN_TIMEOUT_S = 600

# Tolerances (metrics.md, "Scalar metrics" and "Temperature scaling").
NLL_RTOL = 1e-6
CALIBRATED_NLL_RTOL = 1e-5
TEMPERATURE_RTOL = 1e-4
PLATT_TOL = 1e-6        # slope and intercept: relative, absolute near 0 (not in metrics.md)
SMOOTH_ECE_ATOL = 1e-4
DOUBLE_ATOL = 1e-9
DOUBLE_RTOL = 1e-12

# Fields that are present only when asked for: absent from expected.json means that the
# report must not carry them either.
OPTIONAL_FIELDS = {"classwise_ece", "smooth_ece", "temperature_scaling", "platt_scaling",
                   "intervals"}


def required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: point it at the built binary (ctest sets it)")
    return value


@pytest.fixture(scope="session")
def calib_bin():
    return required_env("CALIB_BIN")


@pytest.fixture(scope="session")
def server_address():
    """A calibd on 127.0.0.1 with a port of the kernel's choosing, for the session."""
    binary = required_env("CALIBD_BIN")
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()
    log = []

    def pump():  # keeps draining the per-call log so the server never blocks on it
        for line in proc.stdout:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=60)
            except queue.Empty:
                pytest.fail("calibd did not report listening within 60 s:\n" + "".join(log))
            if line is None:
                pytest.fail(f"calibd exited with {proc.wait()}:\n" + "".join(log))
            found = re.search(r"calibd listening on (\S+):(\d+)", line)
            if found:
                break
        yield f"127.0.0.1:{found.group(2)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_calib(calib_bin, case, extra):
    folder = FIXTURES / case
    args = shlex.split((folder / "args.txt").read_text())
    cmd = [calib_bin, "eval", "--logits", str(folder / "logits.npy"),
           "--labels", str(folder / "labels.npy"), *args, "--json", "-", *extra]
    env = {k: v for k, v in os.environ.items() if k != "CALIB_SERVER"}
    done = subprocess.run(cmd, capture_output=True, timeout=RUN_TIMEOUT_S, env=env)
    assert done.returncode == 0, (
        f"{case}: {shlex.join(cmd)} exited {done.returncode}:\n"
        f"{done.stderr.decode(errors='replace')}")
    return done.stdout


# ---------------------------------------------------------------------------------
# Comparison.


def field_name(path):
    return re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])


class Comparison:
    """Walks expected.json beside the report and collects every mismatch."""

    def __init__(self, case, report):
        self.case = case
        self.report = report
        self.problems = []

    def fail(self, path, message):
        self.problems.append(f"{self.case}: {path}: {message}")

    def tolerance(self, path, expected):
        """Allowed |actual - expected| for the double at `path`."""
        name = field_name(path)
        fit = next((f for f in ("temperature_scaling", "platt_scaling")
                    if path.startswith(f + ".calibrated.")), None)
        if name == "nll":
            return (CALIBRATED_NLL_RTOL if fit else NLL_RTOL) * abs(expected)
        if name == "temperature" and path == "temperature_scaling.temperature":
            return TEMPERATURE_RTOL * abs(expected)
        if path in ("platt_scaling.slope", "platt_scaling.intercept"):
            return PLATT_TOL * max(1.0, abs(expected))
        if name == "smooth_ece":
            return SMOOTH_ECE_ATOL
        tol = DOUBLE_ATOL + DOUBLE_RTOL * abs(expected)
        if fit:
            tol += self.fit_allowance(fit, path[len(fit) + len(".calibrated."):])
        return tol

    def fit_allowance(self, fit, field):
        """A calibrated metric moves with the fitted parameters: allow twice the first-
        order change that the report's parameters, off SciPy's, would cause."""
        expected_fit = self.expected[fit]
        actual_fit = self.report.get(fit, {})
        allowance = 0.0
        for param, derivatives in expected_fit.get("_sensitivity", {}).items():
            delta = abs(float(actual_fit.get(param, 0.0)) - expected_fit[param])
            allowance += 2.0 * abs(derivatives.get(field, 0.0)) * delta
        return allowance

    def compare(self, expected, actual, path=""):
        if isinstance(expected, dict):
            if not isinstance(actual, dict):
                return self.fail(path, f"expected an object, got {actual!r}")
            for key, value in expected.items():
                if key.startswith("_"):
                    continue
                sub = f"{path}.{key}" if path else key
                if key not in actual and (isinstance(value, dict) or key in OPTIONAL_FIELDS):
                    self.fail(sub, "missing from the report")
                    continue
                self.compare(value, actual.get(key, default_of(value)), sub)
            for key in OPTIONAL_FIELDS & (actual.keys() - expected.keys()):
                self.fail(f"{path}.{key}" if path else key,
                          "present in the report but not asked for")
        elif isinstance(expected, list):
            if not isinstance(actual, list) or len(actual) != len(expected):
                got = len(actual) if isinstance(actual, list) else actual
                return self.fail(path, f"expected {len(expected)} elements, got {got}")
            for i, (e, a) in enumerate(zip(expected, actual)):
                self.compare(e, a, f"{path}[{i}]")
        elif isinstance(expected, bool):
            if actual is not expected:
                self.fail(path, f"expected {expected}, got {actual!r}")
        elif isinstance(expected, int):
            # uint64 comes as a string in the protobuf JSON mapping.
            try:
                ok = int(actual) == expected
            except (TypeError, ValueError):
                ok = False
            if not ok:
                self.fail(path, f"expected {expected}, got {actual!r}")
        elif isinstance(expected, float):
            try:
                value = float(actual)
            except (TypeError, ValueError):
                return self.fail(path, f"expected {expected!r}, got {actual!r}")
            tol = self.tolerance(path, expected)
            if not abs(value - expected) <= tol:  # also catches NaN
                self.fail(path, f"expected {expected!r}, got {value!r} "
                                f"(off by {abs(value - expected):.3g}, tolerance {tol:.3g})")
        else:
            if actual != expected:
                self.fail(path, f"expected {expected!r}, got {actual!r}")

    def run(self, expected):
        self.expected = expected
        self.compare(expected, self.report)
        wanted = expected.get("_expect_warning_contains")
        if wanted is not None:
            warnings = self.report.get("warnings", [])
            if not any(wanted.lower() in w.lower() for w in warnings):
                self.fail("warnings", f"no warning contains {wanted!r}: {warnings!r}")
        return self.problems


def default_of(value):
    """What the protobuf JSON mapping leaves out: zeros, false, empty lists."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return 0
    if isinstance(value, list):
        return []
    return value


# ---------------------------------------------------------------------------------
# The tests.


@pytest.mark.parametrize("case", CASES)
def test_fixture(case, calib_bin, server_address):
    local = run_calib(calib_bin, case, [])
    remote = run_calib(calib_bin, case, ["--server", server_address])
    one_row_per_message = run_calib(
        calib_bin, case, ["--server", server_address, "--chunk-bytes", "1"])
    assert local == remote, f"{case}: in-process and calibd reports differ"
    assert local == one_row_per_message, (
        f"{case}: calibd's report changes when the rows come one per message")

    report = json.loads(local)
    expected = json.loads((FIXTURES / case / "expected.json").read_text())
    problems = Comparison(case, report).run(expected)
    shown = "\n".join(problems[:40])
    more = f"\n... and {len(problems) - 40} more" if len(problems) > 40 else ""
    assert not problems, f"{len(problems)} field(s) off the reference:\n{shown}{more}"


def test_no_rows_are_checked_like_any_batch(calib_bin, server_address, tmp_path):
    """Empty files still go to the engine as one empty batch, in process and through
    calibd alike: int32 logits are refused for their dtype, not for having no rows."""
    import numpy as np
    np.save(tmp_path / "logits.npy", np.zeros((0, 3), np.int32))
    np.save(tmp_path / "labels.npy", np.zeros(0, np.int64))
    env = {k: v for k, v in os.environ.items() if k != "CALIB_SERVER"}
    messages = []
    for extra in ([], ["--server", server_address]):
        done = subprocess.run(
            [calib_bin, "eval", "--logits", str(tmp_path / "logits.npy"), "--labels",
             str(tmp_path / "labels.npy"), *extra],
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)
        assert done.returncode == 1, done.stderr
        assert "int32" in done.stderr, done.stderr
        messages.append(done.stderr.strip().removeprefix("calib: "))
    assert messages[0] in messages[1], messages


def test_fixtures_cover_the_cases():
    """The generator's cases are all here (a missing folder would go unnoticed)."""
    names = set(CASES)
    for required in ("lm_vocab", "gaussian_nb_digits", "multilabel_sigmoid",
                     "binary_edges_right_closed", "binary_edges_left_closed",
                     "binary_top_label", "warn_probabilities_as_logits"):
        assert required in names, f"tests/fixtures/{required} is missing: run generate.py"
    for case in CASES:
        for name in ("logits.npy", "labels.npy", "args.txt"):
            assert (FIXTURES / case / name).is_file(), f"{case}: {name} is missing"
