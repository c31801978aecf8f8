"""The deployment files: Dockerfile, .dockerignore, deploy/docker-compose.yml and the
Kubernetes manifests of deploy/kubernetes/. Each is parsed (the YAML with python3-yaml)
and held to what running calibd needs: gRPC probes on the container's port, resources,
a locked-down security context, a termination grace longer than calibd's drain plus the
preStop pause, Services and a PodDisruptionBudget that select the pods, an autoscaler
that targets the Deployment. The command line each of them gives calibd is then run for
real (on 127.0.0.1), with the health check each of them declares.

No Docker engine or cluster runs here; `kubectl kustomize` is run when kubectl is on PATH.
Needs CALIBD_BIN and CALIB_BIN (ctest sets both).
"""

import json
import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import threading

import pytest
import yaml

SOURCE = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = SOURCE / "Dockerfile"
DEPLOY = SOURCE / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "docker-compose.yml"
SLIM_PACKAGES = DEPLOY / "bookworm-slim-packages.txt"
GRPC_PORT = 50051
METRICS_PORT = 9090
UID = 65532
START_TIMEOUT_S = 60


def required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: point it at the built binary (ctest sets it)")
    return value


# --- Dockerfile ---------------------------------------------------------------------------

def dockerfile_stages():
    """[(FROM argument, [(INSTRUCTION, arguments)])], continuation lines joined and
    comments dropped, as the Docker builder reads them."""
    stages, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not current and not line):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, rest = (current + line).partition(" ")
        current = ""
        if keyword.upper() == "FROM":
            stages.append((rest.strip(), []))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1][1].append((keyword.upper(), rest.strip()))
    return stages


def instructions(stage, keyword):
    return [rest for key, rest in stage[1] if key == keyword]


def exec_form(arguments):
    """The JSON array of an exec-form ENTRYPOINT, CMD or HEALTHCHECK CMD."""
    assert arguments.startswith("["), f"not exec form (a shell would be PID 1): {arguments}"
    return json.loads(arguments)


def image_config():
    final = dockerfile_stages()[-1]
    entrypoint = exec_form(instructions(final, "ENTRYPOINT")[-1])
    cmd = exec_form(instructions(final, "CMD")[-1])
    healthcheck = instructions(final, "HEALTHCHECK")[-1]
    health_cmd = exec_form(healthcheck[healthcheck.index(" CMD ") + len(" CMD "):])
    return entrypoint, cmd, health_cmd


def package_section(name):
    out = subprocess.run(["sh", str(SOURCE / "scripts" / "packages.sh"), name],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_dockerfile_builds_on_bookworm_and_runs_on_bookworm_slim():
    stages = dockerfile_stages()
    images = [image for image, _ in stages]
    assert images == ["debian:bookworm AS build", "debian:bookworm-slim"]
    build_runs = " ".join(instructions(stages[0], "RUN"))
    for flag in ("-DCMAKE_BUILD_TYPE=Release", "-DCALIB_BUILD_TESTS=OFF",
                 "--target calibd calib"):
        assert flag in build_runs
    copies = instructions(stages[1], "COPY")
    assert "--from=build /build/calibd /build/calib /usr/local/bin/" in copies


@pytest.mark.parametrize("stage_index,section", [(0, "build"), (1, "runtime")])
def test_dockerfile_installs_its_packages_from_scripts_packages_txt(stage_index, section):
    stage = dockerfile_stages()[stage_index]
    installs = [run for run in instructions(stage, "RUN") if "apt-get install" in run]
    assert len(installs) == 1, f"stage {stage[0]}: one apt-get install, not {installs}"
    run = installs[0]
    # scripts/ of the build context is mounted where the command reads it.
    assert "--mount=type=bind,source=scripts,target=/tmp/scripts" in run
    command = run[run.index("apt-get install") + len("apt-get install"):].split("&&")[0]
    packages = [word for word in command.split() if not word.startswith("-")]
    assert packages == ["$(sh", "/tmp/scripts/packages.sh", f"{section})"], (
        f"stage {stage[0]} must install exactly `packages.sh {section}`, not {packages}")
    named = set(package_section("build") + package_section("runtime") +
                package_section("test"))
    assert not named & set(command.split())
    assert package_section(section), f"[{section}] of scripts/packages.txt is empty"


def test_dockerfile_names_no_runtime_package():
    words = set(re.findall(r"[\w.+-]+", DOCKERFILE.read_text()))
    assert not words & set(package_section("runtime"))


def test_install_deps_installs_every_section():
    script = (SOURCE / "scripts" / "install-deps.sh").read_text()
    assert 'packages.sh" build runtime test' in script
    assert "python3-yaml" in package_section("test")


def test_final_stage_runs_calibd_as_non_root_with_health_check():
    final = dockerfile_stages()[-1]
    user = instructions(final, "USER")[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER must be numeric: {user}"
    assert int(user.split(":")[0]) == UID
    exposed = {int(port.split("/")[0])
               for ports in instructions(final, "EXPOSE") for port in ports.split()}
    assert exposed == {GRPC_PORT, METRICS_PORT}
    entrypoint, _, health_cmd = image_config()
    assert entrypoint == ["calibd", "--listen", f"0.0.0.0:{GRPC_PORT}"]
    assert health_cmd == ["calib", "health", "--server", f"127.0.0.1:{GRPC_PORT}"]


def test_dockerignore_keeps_what_the_build_reads():
    patterns = [line.strip() for line in (SOURCE / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    needed = ["CMakeLists.txt", "proto", "src", "server", "client", "scripts"]
    for path in needed:
        assert (SOURCE / path).exists()
        excluded = [p for p in patterns if pathlib.PurePath(path).match(p.rstrip("/"))]
        assert not excluded, f".dockerignore leaves {path} out of the context: {excluded}"


# --- Kubernetes -------------------------------------------------------------------------

def kustomization():
    return yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def manifests():
    """{kind: [object]} over the kustomization's resources."""
    listed = kustomization()["resources"]
    on_disk = sorted(p.name for p in KUBERNETES.glob("*.yaml")
                     if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk, "every manifest is listed in kustomization.yaml"
    by_kind = {}
    for name in listed:
        for doc in yaml.safe_load_all((KUBERNETES / name).read_text()):
            by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def only(manifests, kind):
    assert len(manifests.get(kind, [])) == 1, f"one {kind}"
    return manifests[kind][0]


def calibd_container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["calibd"]
    return containers[0]


def container_port(container, name_or_number):
    for port in container["ports"]:
        if name_or_number in (port["name"], port["containerPort"]):
            return port["containerPort"]
    pytest.fail(f"container has no port {name_or_number}")


def flag_value(args, flag):
    for i, arg in enumerate(args):
        if arg == flag:
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1:]
    return None


def quantity(value):
    """A Kubernetes quantity in base units (cores, bytes)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    number, unit = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value)).groups()
    return float(number) * units.get(unit, 1)


def selects_pods(selector, deployment):
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())


def test_deployment_probes_are_grpc_on_the_container_port(manifests):
    deployment = only(manifests, "Deployment")
    assert selects_pods(deployment["spec"]["selector"]["matchLabels"], deployment)
    container = calibd_container(deployment)
    grpc_port = container_port(container, "grpc")
    assert grpc_port == GRPC_PORT
    assert flag_value(container["args"], "--listen") == f"0.0.0.0:{grpc_port}"
    for probe in ("readinessProbe", "livenessProbe"):
        handler = container[probe]
        assert set(handler) & {"grpc", "exec", "httpGet", "tcpSocket"} == {"grpc"}, probe
        assert handler["grpc"]["port"] == grpc_port, probe
    # calibd answers health checks for "" and for its service.
    assert container["readinessProbe"]["grpc"].get("service", "") in (
        "", "calib.v1.CalibrationService")
    assert container_port(container, "metrics") == METRICS_PORT


def test_deployment_sets_resources(manifests):
    container = calibd_container(only(manifests, "Deployment"))
    resources = container["resources"]
    for name in ("cpu", "memory"):
        request = quantity(resources["requests"][name])
        limit = quantity(resources["limits"][name])
        assert 0 < request <= limit, name
    # The pool calibd starts is sized to the CPUs it may use, not the node's.
    threads = int(flag_value(container["args"], "--threads"))
    assert threads == quantity(resources["limits"]["cpu"])


def test_deployment_runs_locked_down(manifests):
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    container_context = calibd_container(only(manifests, "Deployment"))["securityContext"]
    context = {**pod.get("securityContext", {}), **container_context}
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == UID
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container_context["readOnlyRootFilesystem"] is True
    assert container_context["allowPrivilegeEscalation"] is False
    assert container_context["capabilities"]["drop"] == ["ALL"]
    assert pod.get("automountServiceAccountToken") is False


def test_termination_grace_covers_pre_stop_and_drain(manifests):
    deployment = only(manifests, "Deployment")
    container = calibd_container(deployment)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert len(command) == 2 and os.path.basename(command[0]) == "sleep"
    pause = float(command[1])
    assert pause > 0
    drain = float(flag_value(container["args"], "--grace-seconds"))
    assert drain == 20
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > pause + drain
    # The preStop command runs in calibd's image: its sleep must come with the base image.
    owner = subprocess.run(["dpkg-query", "-S", command[0]], capture_output=True, text=True)
    assert owner.returncode == 0, owner.stderr
    package = owner.stdout.split(":")[0]
    base = {line.strip() for line in SLIM_PACKAGES.read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    assert package in base, f"{command[0]} is in {package}, not in debian:bookworm-slim"


def test_services_select_the_pods(manifests):
    deployment = only(manifests, "Deployment")
    container = calibd_container(deployment)
    services = {s["metadata"]["name"]: s["spec"] for s in manifests["Service"]}
    assert set(services) == {"calibd", "calibd-headless"}
    headless, regular = services["calibd-headless"], services["calibd"]
    assert headless["clusterIP"] == "None"
    assert regular.get("type", "ClusterIP") == "ClusterIP" and "clusterIP" not in regular
    for spec, ports in ((headless, {GRPC_PORT}), (regular, {GRPC_PORT, METRICS_PORT})):
        assert selects_pods(spec["selector"], deployment)
        # Each Service port leads to the container port of the same number.
        assert {p["port"]: container_port(container, p["targetPort"])
                for p in spec["ports"]} == {port: port for port in ports}
    # The address clients are told to use names this Service in this namespace.
    namespace = kustomization()["namespace"]
    target = f"dns:///calibd-headless.{namespace}.svc.cluster.local:{GRPC_PORT}"
    assert target in (KUBERNETES / "service-headless.yaml").read_text()
    assert target in (KUBERNETES / "kustomization.yaml").read_text()


def test_autoscaler_targets_the_deployment_on_cpu(manifests):
    deployment = only(manifests, "Deployment")
    hpa = only(manifests, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]
    [metric] = spec["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    target = metric["resource"]["target"]
    assert target["type"] == "Utilization" and 0 < target["averageUtilization"] <= 100
    # The autoscaler leaves replicas alone only if the Deployment does not set them.
    assert "replicas" not in deployment["spec"]


def test_disruption_budget_selects_the_pods(manifests):
    deployment = only(manifests, "Deployment")
    pdb = only(manifests, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    spec = pdb["spec"]
    assert selects_pods(spec["selector"]["matchLabels"], deployment)
    assert len({"minAvailable", "maxUnavailable"} & set(spec)) == 1
    assert spec.get("maxUnavailable", 1) == 1 and spec.get("minAvailable", 1) == 1


def test_kustomize_renders():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH (it is no Debian package)")
    rendered = subprocess.run([kubectl, "kustomize", str(KUBERNETES)], capture_output=True,
                              text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    objects = list(yaml.safe_load_all(rendered.stdout))
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "Namespace",
                     "PodDisruptionBudget", "Service", "Service"]
    namespace = kustomization()["namespace"]
    for o in objects:
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == namespace, o["kind"]
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [tag] = [i["newTag"] for i in kustomization()["images"] if i["name"] == "calibd"]
    assert calibd_container(deployment)["image"] == f"calibd:{tag}"


# --- docker compose ---------------------------------------------------------------------

def compose_service():
    return yaml.safe_load(COMPOSE.read_text())["services"]["calibd"]


def test_compose_publishes_ports_and_checks_health():
    service = compose_service()
    assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]
            ).resolve() == DOCKERFILE
    published = {int(p.split(":")[-1]) for p in service["ports"]}
    assert published == {GRPC_PORT, METRICS_PORT}
    _, _, health_cmd = image_config()
    assert service["healthcheck"]["test"] == ["CMD", *health_cmd]
    assert service["restart"] in ("always", "unless-stopped", "on-failure")
    assert service["user"] == f"{UID}:{UID}"
    assert service["read_only"] is True
    stop_grace = float(service["stop_grace_period"].rstrip("s"))
    drain = float(flag_value(service["command"], "--grace-seconds"))
    assert stop_grace > drain


# --- the command lines, run -------------------------------------------------------------

def deployed_command_lines():
    """(where, calibd argv, health check argv) as each deployment runs them: the image's
    ENTRYPOINT with its CMD, or with what compose's command or Kubernetes' args put in
    the CMD's place."""
    entrypoint, cmd, health_cmd = image_config()
    deployment = yaml.safe_load((KUBERNETES / "deployment.yaml").read_text())
    container = calibd_container(deployment)
    assert "command" not in container and "entrypoint" not in compose_service()
    return [pytest.param("Dockerfile", entrypoint + cmd, health_cmd, id="Dockerfile"),
            pytest.param("docker-compose.yml", entrypoint + compose_service()["command"],
                         compose_service()["healthcheck"]["test"][1:], id="compose"),
            pytest.param("deployment.yaml", entrypoint + container["args"], health_cmd,
                         id="kubernetes")]


@pytest.mark.parametrize("where,argv,health_cmd", deployed_command_lines())
def test_calibd_serves_with_the_deployed_command_line(where, argv, health_cmd, tmp_path):
    assert argv[0] == "calibd" and health_cmd[:2] == ["calib", "health"]
    assert flag_value(argv, "--listen") == f"0.0.0.0:{GRPC_PORT}"
    assert flag_value(health_cmd, "--server") == f"127.0.0.1:{GRPC_PORT}"
    assert flag_value(argv, "--metrics-listen") == f"0.0.0.0:{METRICS_PORT}"
    # Same flags, on ports of the kernel's choosing on loopback.
    args = list(argv[1:])
    args[args.index("--listen") + 1] = "127.0.0.1:0"
    args[args.index("--metrics-listen") + 1] = "127.0.0.1:0"
    with open(tmp_path / "calibd.stderr", "w+") as stderr:
        proc = subprocess.Popen([required_env("CALIBD_BIN"), *args], stdout=subprocess.PIPE,
                                stderr=stderr, text=True)
        try:
            lines = queue.Queue()
            threading.Thread(target=lambda: lines.put(proc.stdout.readline()),
                             daemon=True).start()
            try:
                line = lines.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                line = ""
            found = re.search(r"calibd listening on (\S+:\d+)", line)
            stderr.seek(0)
            assert found, f"{where}: calibd {args} did not start: {line}{stderr.read()}"
            health = subprocess.run(
                [required_env("CALIB_BIN"), "health", "--server", found.group(1)],
                capture_output=True, text=True, timeout=START_TIMEOUT_S)
            assert health.returncode == 0 and "SERVING" in health.stdout, health
            proc.send_signal(signal.SIGTERM)
            drain = float(flag_value(args, "--grace-seconds"))
            assert proc.wait(timeout=drain + START_TIMEOUT_S) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
