"""`calib eval --plot`: the reliability diagram of a real run, checked against the --json
report of the same run. The SVG is parsed with xml.etree.ElementTree, so it must be
well-formed; each panel must hold one class="bar" element per non-empty bin of the
predictions it shows (raw, then after temperature scaling, then after Platt scaling).

Needs CALIB_BIN, and CALIBD_BIN for the --server case (ctest sets both).
"""

import json
import os
import pathlib
import queue
import re
import subprocess
import threading
import xml.etree.ElementTree as ElementTree

import pytest

SOURCE = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = SOURCE / "examples"
SVG = "{http://www.w3.org/2000/svg}"
TIMEOUT_S = 300


def required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: point it at the built binary (ctest sets it)")
    return value


def example(name):
    return ["--logits", str(EXAMPLES / f"{name}_logits.npy"),
            "--labels", str(EXAMPLES / f"{name}_labels.npy")]


def calib(*args):
    env = {k: v for k, v in os.environ.items() if k != "CALIB_SERVER"}
    return subprocess.run([required_env("CALIB_BIN"), "eval", *args], capture_output=True,
                          timeout=TIMEOUT_S, env=env)


def plot_and_report(tmp_path, *args):
    """Runs one evaluation that writes both the SVG and the JSON report."""
    svg = tmp_path / "plot.svg"
    done = calib(*args, "--plot", str(svg), "--json", "-")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return ElementTree.parse(svg).getroot(), json.loads(done.stdout)


def panels(root):
    return [g for g in root.iter(SVG + "g") if g.get("class") == "panel"]


def bars(panel):
    return [e for e in panel.iter() if e.get("class") == "bar"]


def non_empty_bins(metrics):
    return sum(1 for b in metrics["reliability_bins"] if int(b["count"]) > 0)


def texts(element):
    return ["".join(t.itertext()) for t in element.iter(SVG + "text")]


def test_one_panel_with_a_bar_per_non_empty_bin(tmp_path):
    root, report = plot_and_report(tmp_path, *example("digits"))
    assert root.tag == SVG + "svg"
    assert root.get("version") == "1.1"
    assert re.fullmatch(r"0 0 \d+(\.\d+)? \d+(\.\d+)?", root.get("viewBox"))
    assert root.find(f".//{SVG}script") is None
    (panel,) = panels(root)
    assert len(bars(panel)) == non_empty_bins(report["metrics"])
    # Every bar spans its bin: the bins are equal-width, so the bars are too.
    widths = {round(float(b.get("width")), 1) for b in bars(panel)}
    assert len(widths) == 1
    assert "confidence" in texts(root) and "accuracy" in texts(root)
    assert f"{report['metrics']['ece']:.4f}" in " ".join(texts(panel))


def test_panels_before_and_after_temperature_scaling(tmp_path):
    root, report = plot_and_report(tmp_path, *example("digits"), "--fit-temperature")
    before, after = panels(root)
    assert len(bars(before)) == non_empty_bins(report["metrics"])
    calibrated = report["temperature_scaling"]["calibrated"]
    assert len(bars(after)) == non_empty_bins(calibrated)
    temperature = report["temperature_scaling"]["temperature"]
    assert f"after temperature scaling (T = {temperature:.3g})" in texts(after)
    assert "before scaling" in texts(before)
    assert f"{calibrated['ece']:.4f}" in " ".join(texts(after))


def test_binary_sigmoid_adds_platt_and_names_its_axes(tmp_path):
    root, report = plot_and_report(tmp_path, *example("breast_cancer"),
                                   "--fit-temperature", "--smooth-ece", "--bins", "10")
    raw, temperature, platt = panels(root)
    assert len(bars(raw)) == non_empty_bins(report["metrics"])
    assert len(bars(temperature)) == non_empty_bins(
        report["temperature_scaling"]["calibrated"])
    assert len(bars(platt)) == non_empty_bins(report["platt_scaling"]["calibrated"])
    assert "fraction of positives" in texts(raw)
    assert "predicted probability" in texts(raw)
    assert any(t.startswith("smECE 0.") for t in texts(raw))


def test_server_draws_the_same_figure(tmp_path):
    binary = required_env("CALIBD_BIN")
    server = subprocess.Popen([binary, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()

    def pump():  # keeps draining the per-call log so that the server never blocks on it
        for line in server.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=60)
            assert line is not None, f"calibd exited with {server.wait()}"
            found = re.search(r"calibd listening on \S+:(\d+)", line)
            if found:
                break
        local = tmp_path / "local.svg"
        remote = tmp_path / "remote.svg"
        args = [*example("digits_gaussian_nb"), "--fit-temperature", "--json", "-"]
        for path, extra in ((local, []), (remote, ["--server", f"127.0.0.1:{found[1]}"])):
            done = calib(*args, "--plot", str(path), *extra)
            assert done.returncode == 0, done.stderr.decode(errors="replace")
        assert local.read_bytes() == remote.read_bytes()
        assert len(panels(ElementTree.parse(remote).getroot())) == 2
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_any_file_name_gives_a_well_formed_document(tmp_path):
    # Markup characters, and a byte that is not UTF-8, in the name of the logits file.
    name = os.fsencode(tmp_path) + b"/a&<b>\"'\xff.npy"
    os.symlink(EXAMPLES / "digits_logits.npy", name)
    svg = tmp_path / "plot.svg"
    done = subprocess.run(
        [os.fsencode(required_env("CALIB_BIN")), b"eval", b"--logits", name, b"--labels",
         os.fsencode(EXAMPLES / "digits_labels.npy"), b"--plot", os.fsencode(svg)],
        capture_output=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    subtitle = texts(ElementTree.parse(svg).getroot())[1]
    assert subtitle.startswith("a&<b>\"'\ufffd.npy · 540 samples")


def test_table_and_plot_together(tmp_path):
    svg = tmp_path / "plot.svg"
    done = calib(*example("digits"), "--plot", str(svg))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert "█ accuracy" in done.stdout.decode()
    assert len(panels(ElementTree.parse(svg).getroot())) == 1


def test_unwritable_plot_path_fails_in_one_line(tmp_path):
    missing = tmp_path / "no such folder" / "plot.svg"
    done = calib(*example("digits"), "--plot", str(missing))
    assert done.returncode == 1
    assert done.stdout == b""
    assert done.stderr.decode().startswith(f"calib: cannot write {missing}: ")
    assert done.stderr.decode().count("\n") == 1
