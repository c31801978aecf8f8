"""calibd's TLS, mutual TLS and bearer-token checks, over real connections.

A throwaway PKI is made with the openssl command: a CA, a server certificate for
127.0.0.1 and localhost, a client certificate from the CA, and a second CA (with a client
certificate of its own) that nothing trusts. calibd is started with the flags under test
and reached with `calib` (eval and health) and the Python client. Whatever succeeds must
give the in-process CLI's report, byte for byte for the CLI's JSON; whatever lacks the
credentials must get no answer but the status. The token never appears in calibd's
output or in an error message.

Needs CALIB_BIN, CALIBD_BIN and PYTHONPATH=<build>/python (ctest sets all three).
"""

import json
import math
import os
import pathlib
import queue
import re
import secrets
import shutil
import subprocess
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest

import calib_client
from calib_client import stubs

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
TIMEOUT_S = 120
EVAL_FLAGS = ["--bins", "10", "--top-k", "1,3", "--fit-temperature", "--bootstrap", "20",
              "--seed", "3"]
EVAL_OPTIONS = dict(num_bins=10, top_k=(1, 3), fit_temperature=True,
                    bootstrap_samples=20, seed=3)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command (scripts/packages.txt)")


def required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: point it at the built binary (ctest sets it)")
    return value


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=TIMEOUT_S)


def new_key(path):
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", str(path))


def new_ca(directory, name):
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    new_key(key)
    openssl("req", "-x509", "-new", "-key", str(key), "-days", "1", "-subj", f"/CN={name}",
            "-out", str(cert))
    return key, cert


def new_leaf(directory, name, ca, extensions):
    """A certificate for `name` signed by `ca` (key, cert) with `extensions` (v3 lines)."""
    key, csr, cert = (directory / f"{name}.key", directory / f"{name}.csr",
                      directory / f"{name}.pem")
    ext = directory / f"{name}.ext"
    ext.write_text("\n".join(extensions) + "\n")
    new_key(key)
    openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
            "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(cert))
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = new_ca(d, "calib-test-ca")
    rogue_ca = new_ca(d, "rogue-ca")
    server = new_leaf(d, "server", ca, ["subjectAltName=IP:127.0.0.1,DNS:localhost",
                                         "extendedKeyUsage=serverAuth"])
    client = new_leaf(d, "client", ca, ["extendedKeyUsage=clientAuth"])
    rogue_client = new_leaf(d, "rogue-client", rogue_ca, ["extendedKeyUsage=clientAuth"])
    token = secrets.token_urlsafe(24)
    (d / "token").write_text(token + "\n")
    (d / "wrong-token").write_text(secrets.token_urlsafe(24) + "\n")
    return dict(dir=d, ca=ca[1], rogue_ca=rogue_ca[1], server_key=server[0],
                server_cert=server[1], client_key=client[0], client_cert=client[1],
                rogue_key=rogue_client[0], rogue_cert=rogue_client[1], token=token,
                token_file=d / "token", wrong_token_file=d / "wrong-token")


class Calibd:
    """A calibd on 127.0.0.1:0; every line it writes (stdout and stderr) is kept."""

    def __init__(self, *flags):
        self.proc = subprocess.Popen(
            [required_env("CALIBD_BIN"), "--listen", "127.0.0.1:0", "--threads", "2",
             *map(str, flags)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        started = queue.Queue()

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line)
                if "calibd listening on" in line:
                    started.put(line)
            started.put(None)

        threading.Thread(target=pump, daemon=True).start()
        try:
            line = started.get(timeout=60)
        except queue.Empty:
            line = None
        if line is None:
            self.stop()
            pytest.fail("calibd did not start:\n" + self.log())
        self.port = int(re.search(r":(\d+)$", line.strip()).group(1))
        self.address = f"127.0.0.1:{self.port}"

    def log(self):
        return "".join(self.lines)

    def call_lines(self):
        return [line for line in self.lines if line.startswith("calibd call ")]

    def wait_for_calls(self, count):
        """Waits for `count` call lines: a call's line is written as it ends, which may be
        after its client has the answer."""
        for _ in range(600):
            if len(self.call_lines()) >= count:
                break
            time.sleep(0.05)
        return self.call_lines()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log()


@pytest.fixture
def calibd():
    started = []

    def start(*flags):
        server = Calibd(*flags)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The digits example as .npy files, and the in-process CLI's JSON report of them."""
    d = tmp_path_factory.mktemp("data")
    logits = np.load(EXAMPLES / "digits_logits.npy")
    labels = np.load(EXAMPLES / "digits_labels.npy")
    np.save(d / "logits.npy", logits)
    np.save(d / "labels.npy", labels)
    files = ["--logits", str(d / "logits.npy"), "--labels", str(d / "labels.npy")]
    done = cli("eval", *files, *EVAL_FLAGS, "--json", "-")
    assert done.returncode == 0, done.stderr
    return dict(logits=logits, labels=labels, files=files, json=done.stdout)


def cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "CALIB_SERVER"}
    return subprocess.run([required_env("CALIB_BIN"), *map(str, args)], capture_output=True,
                          text=True, timeout=TIMEOUT_S, env=env)


def remote_eval(data, server, *flags):
    return cli("eval", *data["files"], *EVAL_FLAGS, "--json", "-", "--server",
               server.address, *flags)


def from_json(value):
    """`calib eval --json` as plain numbers (64-bit integers are strings in the JSON
    mapping; NaN becomes a marker so that dicts holding it compare equal)."""
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


def python_report(data, server, **connection):
    report = calib_client.evaluate(data["logits"], data["labels"], server=server.address,
                                   timeout=TIMEOUT_S, **connection, **EVAL_OPTIONS)
    return from_json(report.to_dict())


def python_error(data, server, **connection):
    with pytest.raises(calib_client.CalibError) as caught:
        calib_client.evaluate(data["logits"], data["labels"], server=server.address,
                              timeout=TIMEOUT_S, **connection, **EVAL_OPTIONS)
    return caught.value


def expect_cli_failure(done, code):
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    assert f": {code}" in done.stderr, done.stderr


def pem(path):
    return pathlib.Path(path).read_bytes()


# --- TLS ----------------------------------------------------------------------------------

def test_tls_answers_exactly_what_in_process_gives(pki, data, calibd):
    server = calibd("--tls-cert", pki["server_cert"], "--tls-key", pki["server_key"])
    done = remote_eval(data, server, "--tls-ca", pki["ca"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == data["json"]
    assert python_report(data, server, root_certificates=pem(pki["ca"])) == \
        from_json(json.loads(data["json"]))
    health = cli("health", "--server", server.address, "--tls-ca", pki["ca"])
    assert (health.returncode, health.stdout) == (0, "SERVING\n"), health.stderr
    # The certificate names localhost too. (Through the Python client: c-ares, which
    # resolves the name, leaks 10 bytes that LeakSanitizer would blame on the ASan CLI.)
    with calib_client.Client(f"localhost:{server.port}", root_certificates=pem(pki["ca"]),
                             timeout=TIMEOUT_S) as client:
        assert client.health() == "SERVING"


def test_tls_refuses_plaintext_and_untrusted_servers(pki, data, calibd):
    server = calibd("--tls-cert", pki["server_cert"], "--tls-key", pki["server_key"])
    expect_cli_failure(remote_eval(data, server), "UNAVAILABLE")
    expect_cli_failure(cli("health", "--server", server.address), "UNAVAILABLE")
    assert python_error(data, server).code == grpc.StatusCode.UNAVAILABLE
    # A client that trusts another CA does not accept the server's certificate.
    expect_cli_failure(remote_eval(data, server, "--tls-ca", pki["rogue_ca"]),
                       "UNAVAILABLE")
    error = python_error(data, server, root_certificates=pem(pki["rogue_ca"]))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert not server.call_lines(), "no call may reach the service"


def test_mutual_tls_needs_a_client_certificate_from_the_ca(pki, data, calibd):
    server = calibd("--tls-cert", pki["server_cert"], "--tls-key", pki["server_key"],
                    "--tls-client-ca", pki["ca"])
    ours = ["--tls-ca", pki["ca"]]
    done = remote_eval(data, server, *ours, "--tls-cert", pki["client_cert"], "--tls-key",
                       pki["client_key"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == data["json"]
    assert python_report(data, server, root_certificates=pem(pki["ca"]),
                         certificate_chain=pem(pki["client_cert"]),
                         private_key=pem(pki["client_key"])) == \
        from_json(json.loads(data["json"]))

    expect_cli_failure(remote_eval(data, server, *ours), "UNAVAILABLE")
    expect_cli_failure(cli("health", "--server", server.address, *ours), "UNAVAILABLE")
    assert python_error(data, server, root_certificates=pem(pki["ca"])).code == \
        grpc.StatusCode.UNAVAILABLE
    expect_cli_failure(remote_eval(data, server, *ours, "--tls-cert", pki["rogue_cert"],
                                   "--tls-key", pki["rogue_key"]), "UNAVAILABLE")
    error = python_error(data, server, root_certificates=pem(pki["ca"]),
                         certificate_chain=pem(pki["rogue_cert"]),
                         private_key=pem(pki["rogue_key"]))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    health = cli("health", "--server", server.address, *ours, "--tls-cert",
                 pki["client_cert"], "--tls-key", pki["client_key"])
    assert (health.returncode, health.stdout) == (0, "SERVING\n"), health.stderr
    # Only the calls with the right certificate reached the service: two of the CLI and
    # two of the Python client (GetServerInfo, then EvaluateStream each).
    time.sleep(1)  # time for the line of a call that should not have been to show
    lines = server.wait_for_calls(4)
    assert len(lines) == 4 and all("status=OK" in line for line in lines), lines


# --- bearer token -------------------------------------------------------------------------

def unauthenticated_raw_calls(server, metadata):
    """Evaluate (unary) and GetServerInfo with `metadata`, on a plain stub: their codes."""
    codes = []
    with grpc.insecure_channel(server.address) as channel:
        stub = stubs.calibration_pb2_grpc.CalibrationServiceStub(channel)
        for call, request in [(stub.GetServerInfo, stubs.calibration_pb2.GetServerInfoRequest()),
                              (stub.Evaluate, stubs.calibration_pb2.EvaluateRequest())]:
            try:
                call(request, metadata=metadata, timeout=TIMEOUT_S)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())
    return codes


def test_token_is_required_except_for_health(pki, data, calibd):
    server = calibd("--auth-token-file", pki["token_file"], "--metrics-listen", "127.0.0.1:0")
    token, wrong = pki["token"], pki["wrong_token_file"].read_text().strip()
    assert "warning: --auth-token-file without --tls-cert" in server.log()

    messages = []
    for flags in ([], ["--token-file", pki["wrong_token_file"]]):
        done = remote_eval(data, server, *flags)
        expect_cli_failure(done, "UNAUTHENTICATED")
        messages.append(done.stderr)
    for connection in ({}, {"token": wrong}, {"token": token[:-1]}, {"token": token + "x"}):
        error = python_error(data, server, **connection)
        assert error.code == grpc.StatusCode.UNAUTHENTICATED, connection
        messages.append(str(error))
        with calib_client.Client(server.address, timeout=TIMEOUT_S, **connection) as client:
            with pytest.raises(calib_client.CalibError) as caught:
                client.server_info()
            assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
            # Health checks are open: Kubernetes' gRPC probes send no metadata.
            assert client.health() == "SERVING"
            assert client.health("calib.v1.CalibrationService") == "SERVING"
    for metadata in [None, (("authorization", token),),  # no scheme
                     (("authorization", f"Basic {token}"),),
                     (("authorization", f"Bearer {token}"), ("authorization", "Bearer x"))]:
        assert unauthenticated_raw_calls(server, metadata) == \
            [grpc.StatusCode.UNAUTHENTICATED] * 2, metadata
    # 2 CLI runs (GetServerInfo is their first call), 4 Python clients (evaluate and
    # server_info each), 4 metadata cases (GetServerInfo and Evaluate each).
    refused = 2 + 4 * 2 + 4 * 2
    lines = server.wait_for_calls(refused)
    assert len(lines) == refused
    assert all("status=UNAUTHENTICATED" in line for line in lines), lines
    # The refused calls are counted like any other; /metrics carries no secret either.
    metrics_url = re.search(r"calibd metrics on (\S+)", server.log()).group(1)
    with urllib.request.urlopen(metrics_url, timeout=TIMEOUT_S) as response:
        metrics = response.read().decode()
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("calib_calls_total{") and 'code="UNAUTHENTICATED"' in line)
    assert counted == refused, metrics
    assert token not in metrics and wrong not in metrics
    health = cli("health", "--server", server.address)
    assert (health.returncode, health.stdout) == (0, "SERVING\n"), health.stderr

    done = remote_eval(data, server, "--token-file", pki["token_file"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == data["json"]
    assert python_report(data, server, token=token) == from_json(json.loads(data["json"]))
    # The scheme is case-insensitive (RFC 7235); the unary Evaluate is checked too and,
    # with the token, reaches the service (which wants a config).
    assert unauthenticated_raw_calls(server, (("authorization", f"bearer {token}"),)) == \
        [grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT]
    # Reflection is not token-checked, so it is off unless asked for.
    with grpc.insecure_channel(server.address) as channel:
        reflection = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        with pytest.raises(grpc.RpcError) as caught:
            list(reflection(iter([b""]), timeout=TIMEOUT_S))
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED

    log = server.stop()
    assert len(server.call_lines()) > refused
    for secret in (token, wrong):
        assert secret not in log
        for message in messages:
            assert secret not in message
    assert "authorization" not in log.lower()


def test_token_with_mutual_tls(pki, data, calibd):
    server = calibd("--tls-cert", pki["server_cert"], "--tls-key", pki["server_key"],
                    "--tls-client-ca", pki["ca"], "--auth-token-file", pki["token_file"])
    assert "warning" not in server.log()
    tls = ["--tls-ca", pki["ca"], "--tls-cert", pki["client_cert"], "--tls-key",
           pki["client_key"]]
    expect_cli_failure(remote_eval(data, server, *tls), "UNAUTHENTICATED")
    done = remote_eval(data, server, *tls, "--token-file", pki["token_file"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == data["json"]
    connection = dict(root_certificates=pem(pki["ca"]),
                      certificate_chain=pem(pki["client_cert"]),
                      private_key=pem(pki["client_key"]))
    assert python_error(data, server, **connection).code == \
        grpc.StatusCode.UNAUTHENTICATED
    assert python_report(data, server, token=pki["token"], **connection) == \
        from_json(json.loads(data["json"]))
    assert pki["token"] not in server.stop()


# --- startup ------------------------------------------------------------------------------

def run_calibd(*flags):
    return subprocess.run([required_env("CALIBD_BIN"), "--listen", "127.0.0.1:0",
                           *map(str, flags)], capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def test_bad_security_files_stop_calibd_at_startup(pki, tmp_path):
    missing = tmp_path / "missing.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    empty = tmp_path / "empty-token"
    empty.write_text(" \n")
    spaced = tmp_path / "spaced-token"
    spaced.write_text("two words\n")
    cert, key = ["--tls-cert", pki["server_cert"]], ["--tls-key", pki["server_key"]]
    cases = [
        (["--tls-cert", missing, *key], f"flag --tls-cert: {missing}: cannot read"),
        ([*cert, "--tls-key", missing], f"flag --tls-key: {missing}: cannot read"),
        (["--tls-cert", garbage, *key], f"flag --tls-cert: {garbage}: holds no PEM"),
        ([*cert, "--tls-key", garbage], f"flag --tls-key: {garbage}: holds no"),
        ([*cert, "--tls-key", pki["client_key"]],
         f"flag --tls-key: {pki['client_key']}: is not the key of the certificate"),
        ([*cert, *key, "--tls-client-ca", garbage],
         f"flag --tls-client-ca: {garbage}: holds no PEM certificate"),
        ([*cert, *key, "--tls-client-ca", missing], f"flag --tls-client-ca: {missing}"),
        (["--auth-token-file", missing], f"flag --auth-token-file: cannot read {missing}"),
        (["--auth-token-file", empty], f"flag --auth-token-file: {empty} holds no token"),
        (["--auth-token-file", spaced], "printable ASCII without spaces"),
    ]
    for flags, message in cases:
        done = run_calibd(*flags)
        assert done.returncode == 1, (flags, done.stderr)
        assert done.stdout == "", flags
        assert message in done.stderr, (flags, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
    assert "two words" not in run_calibd("--auth-token-file", spaced).stderr
    for flags, message in [(["--tls-client-ca", pki["ca"]], "--tls-client-ca needs"),
                           (cert, "--tls-cert and --tls-key go together"),
                           (key, "--tls-cert and --tls-key go together"),
                           (["--keepalive-seconds", "0"], "flag --keepalive-seconds: 0"),
                           (["--max-connection-age-seconds", "-1"],
                            "--max-connection-age-seconds")]:
        done = run_calibd(*flags)
        assert done.returncode == 2, (flags, done.stderr)
        assert message in done.stderr, (flags, done.stderr)


def test_help_names_the_security_and_connection_flags():
    done = run_calibd("--help")
    assert done.returncode == 0
    for flag in ("--tls-cert", "--tls-key", "--tls-client-ca", "--auth-token-file",
                 "--keepalive-seconds", "--keepalive-timeout-seconds",
                 "--max-connection-age-seconds", "--max-connection-age-grace-seconds"):
        assert flag in done.stdout


# --- connections --------------------------------------------------------------------------

def peers(server, method):
    return [re.search(r" peer=(\S+)", line).group(1) for line in server.call_lines()
            if f"method={method} " in line]


def test_connections_age_out_and_calls_in_flight_finish(data, calibd):
    aging = calibd("--max-connection-age-seconds", "1")
    steady = calibd()
    # The aged connection is closed with GOAWAY and the client reconnects from a new
    # port; gRPC takes a few seconds to do that on a quiet connection, hence the wait.
    with calib_client.Client(aging.address, timeout=TIMEOUT_S) as client:
        for _ in range(120):
            client.server_info()
            if len(set(peers(aging, "GetServerInfo"))) > 1:
                break
            time.sleep(0.5)
    assert len(set(peers(aging, "GetServerInfo"))) > 1
    # Without the flag's 1 s (the default is 300 s), one connection serves them all.
    with calib_client.Client(steady.address, timeout=TIMEOUT_S) as client:
        for _ in range(len(peers(aging, "GetServerInfo"))):
            client.server_info()
            time.sleep(0.5)
    assert len(set(peers(steady, "GetServerInfo"))) == 1

    # A stream that lasts past the connection's age is not cut: the default grace lets
    # calls in flight end.
    def slow_requests():
        full = stubs.calibration_pb2.EvaluateStreamRequest
        yield full(config=stubs.calibration_pb2.EvaluationConfig(num_classes=10,
                                                                 fit_temperature=True))
        for rows in np.array_split(np.arange(len(data["labels"])), 8):
            time.sleep(0.5)
            yield full(batch=stubs.calibration_pb2.Batch(
                logits=stubs.calibration_pb2.Tensor(
                    dtype=stubs.calibration_pb2.DTYPE_FLOAT32,
                    data=data["logits"][rows].tobytes()),
                labels=stubs.calibration_pb2.Tensor(
                    dtype=stubs.calibration_pb2.DTYPE_INT64,
                    data=data["labels"][rows].astype(np.int64).tobytes())))

    with grpc.insecure_channel(aging.address) as channel:
        stub = stubs.calibration_pb2_grpc.CalibrationServiceStub(channel)
        response = stub.EvaluateStream(slow_requests(), timeout=TIMEOUT_S)
    with calib_client.Client(steady.address, timeout=TIMEOUT_S) as client:
        expected = client.evaluate(data["logits"], data["labels"], fit_temperature=True)
    assert from_json(calib_client.report.from_proto(response.report).to_dict()) == \
        from_json(expected.to_dict())
