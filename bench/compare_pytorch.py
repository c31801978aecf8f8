#!/usr/bin/python3
"""calib against PyTorch on the same .npy files, alternating the runs; prints medians,
ratios and the machine as Markdown.

  /usr/bin/python3 bench/compare_pytorch.py [--build build] [--repeats 5]
      [--fit-repeats 3] [--shapes 100000x1000,8192x50257] [--fit-shapes ...]
      [--threads 2] [--skip-naive]

Per shape (float32 logits, int64 labels, written once to a temp dir), each repetition runs
in turn:
  calib      `calib eval` in-process: the whole process (wall, user, sys).
  calibd     `calib eval --server` against a calibd this script starts (127.0.0.1, free
             port, --threads N): the CLI's whole process; the server's CPU is reported too.
  torch      one PyTorch process (torch.set_num_threads(N)): cross_entropy, softmax,
             max/argmax, bucketize + scatter_add for 15 bins, Brier as
             |p|^2 - 2 p_y + 1. Timed inside the process after its imports (so import
             excluded), file load included. Allocator tuned: the file is read in 8 MiB
             row blocks into one reused buffer (readinto: no fresh pages per block), and
             glibc keeps freed memory (MALLOC_MMAP_THRESHOLD_=32 MiB, its maximum;
             MALLOC_TRIM_THRESHOLD_ and MALLOC_TOP_PAD_ 1 GiB).
  torch naive  the same metrics on the whole tensor from np.load, default allocator.
Temperature fits (--fit-repeats), the logits already in memory for PyTorch:
  calib      `calib eval --fit-temperature` minus `calib eval`, whole processes.
  LBFGS      the original recipe (Guo et al. 2017): LBFGS([T], lr=0.01, max_iter=50).
  LBFGS-SW   LBFGS(lr=1, max_iter=50, line_search_fn="strong_wolfe").
and the optimum T*: SciPy's bounded minimiser on log T over [1e-12, 1e12], the NLL in
float64 (xatol 1e-10); |T - T*| / T* is reported for each.

Warm PyTorch alone, the figure the row pass is compared with (the logits already in
memory, the same metrics over 8 MiB row blocks, --repeats times; JSON with every time):
  /usr/bin/python3 bench/compare_pytorch.py --worker warm --logits L.npy --labels Y.npy
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import bench_util as bu

BINS = 15
BLOCK_BYTES = 8 << 20
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20),
                "MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_TOP_PAD_": str(1 << 30)}


# --- the PyTorch side, run as `compare_pytorch.py --worker MODE ...` ------------------

def _cpu_now():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime, usage.ru_stime


def _elapsed(start):
    now = _cpu_now()
    return {"wall": now[0] - start[0], "user": now[1] - start[1], "sys": now[2] - start[2]}


def _npy_header(path):
    import numpy as np
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = np.lib.format._read_array_header(f, version)
        return f.tell(), shape, dtype


class _Sums:
    """Running sums of the metrics over row blocks."""

    def __init__(self, torch):
        self.torch = torch
        self.n = 0
        self.nll = 0.0
        self.brier = 0.0
        self.correct = 0
        self.boundaries = torch.linspace(0, 1, BINS + 1)[1:-1]
        self.count = torch.zeros(BINS, dtype=torch.float64)
        self.conf = torch.zeros(BINS, dtype=torch.float64)
        self.acc = torch.zeros(BINS, dtype=torch.float64)

    def add(self, x, y):
        torch = self.torch
        self.nll += torch.nn.functional.cross_entropy(x, y, reduction="sum").item()
        p = torch.softmax(x, 1)
        conf, pred = p.max(1)
        hit = (pred == y).to(torch.float64)
        py = p.gather(1, y[:, None])[:, 0]
        self.brier += (torch.linalg.vector_norm(p, dim=1).square() - 2 * py + 1).sum().item()
        # (a, b] bins, 0 in the first.
        index = torch.bucketize(conf, self.boundaries, right=False)
        self.count.scatter_add_(0, index, torch.ones_like(hit))
        self.conf.scatter_add_(0, index, conf.to(torch.float64))
        self.acc.scatter_add_(0, index, hit)
        self.correct += int(hit.sum().item())
        self.n += x.shape[0]

    def result(self):
        ece = (self.acc - self.conf).abs().sum().item() / self.n
        return {"nll": self.nll / self.n, "brier": self.brier / self.n,
                "accuracy": self.correct / self.n, "ece": ece}


def worker_metrics(logits_path, labels_path, threads, tuned):
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    start = _cpu_now()
    sums = _Sums(torch)
    labels = torch.from_numpy(np.load(labels_path))
    if tuned:
        offset, (rows, classes), _ = _npy_header(logits_path)
        block_rows = max(1, BLOCK_BYTES // (classes * 4))
        buffer = np.empty((block_rows, classes), np.float32)
        with open(logits_path, "rb", buffering=0) as f:
            f.seek(offset)
            for first in range(0, rows, block_rows):
                n = min(block_rows, rows - first)
                view = buffer[:n]
                f.readinto(memoryview(view.reshape(-1).view(np.uint8)))
                sums.add(torch.from_numpy(view), labels[first:first + n])
    else:
        sums.add(torch.from_numpy(np.load(logits_path)), labels)
    return {"metrics": sums.result(), "times": _elapsed(start)}


def worker_warm(logits_path, labels_path, threads, repeats):
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    logits, labels = np.load(logits_path), torch.from_numpy(np.load(labels_path))
    block_rows = max(1, BLOCK_BYTES // (logits.shape[1] * 4))
    times = []
    for _ in range(repeats + 1):  # the first warms the allocator and the caches
        start = time.perf_counter()
        sums = _Sums(torch)
        for first in range(0, logits.shape[0], block_rows):
            sums.add(torch.from_numpy(logits[first:first + block_rows]),
                     labels[first:first + block_rows])
        times.append(time.perf_counter() - start)
    warm = sorted(times[1:])
    return {"metrics": sums.result(), "cold": times[0], "warm": times[1:],
            "warm_median": warm[len(warm) // 2]}


def worker_fits(logits_path, labels_path, threads):
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    logits = torch.from_numpy(np.load(logits_path))
    labels = torch.from_numpy(np.load(labels_path))
    out = {}
    for name, make in (
            ("lbfgs", lambda t: torch.optim.LBFGS([t], lr=0.01, max_iter=50)),
            ("lbfgs_wolfe", lambda t: torch.optim.LBFGS([t], lr=1, max_iter=50,
                                                        line_search_fn="strong_wolfe"))):
        start = _cpu_now()
        temperature = torch.nn.Parameter(torch.ones(1) * 1.5)  # the recipe's start
        optimizer = make(temperature)
        evaluations = 0

        def closure():
            nonlocal evaluations
            evaluations += 1
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(logits / temperature, labels)
            loss.backward()
            return loss

        optimizer.step(closure)
        out[name] = {"temperature": temperature.item(), "evaluations": evaluations,
                     "times": _elapsed(start)}
    return out


def worker_optimum(logits_path, labels_path, threads):
    """SciPy's bounded minimiser on log T of the float64 NLL (the metrics.md reference)."""
    import numpy as np
    import torch
    from scipy.optimize import minimize_scalar
    torch.set_num_threads(threads)
    logits = np.load(logits_path, mmap_mode="r")
    labels = torch.from_numpy(np.load(labels_path))
    block = max(1, BLOCK_BYTES // (logits.shape[1] * 4))

    def nll(log_t):
        beta = float(np.exp(-log_t))
        total = 0.0
        for first in range(0, logits.shape[0], block):
            z = torch.from_numpy(np.array(logits[first:first + block])).double() * beta
            y = labels[first:first + block]
            total += (torch.logsumexp(z, 1) - z.gather(1, y[:, None])[:, 0]).sum().item()
        return total / logits.shape[0]

    best = minimize_scalar(nll, bounds=(np.log(1e-12), np.log(1e12)), method="bounded",
                           options={"xatol": 1e-10, "maxiter": 500})
    return {"temperature": float(np.exp(best.x)), "nll": float(best.fun)}


def run_worker(args):
    if args.worker == "metrics":
        result = worker_metrics(args.logits, args.labels, args.threads, True)
    elif args.worker == "naive":
        result = worker_metrics(args.logits, args.labels, args.threads, False)
    elif args.worker == "warm":
        result = worker_warm(args.logits, args.labels, args.threads, args.repeats)
    elif args.worker == "fits":
        result = worker_fits(args.logits, args.labels, args.threads)
    else:
        result = worker_optimum(args.logits, args.labels, args.threads)
    print(json.dumps(result))


# --- the driver --------------------------------------------------------------------------

def make_files(directory, rows, classes):
    """Logits of a moderately overconfident classifier (T* > 1), labels that fit them."""
    import numpy as np
    rng = np.random.default_rng(rows ^ classes)
    logits_path = os.path.join(directory, f"logits_{rows}x{classes}.npy")
    labels_path = os.path.join(directory, f"labels_{rows}x{classes}.npy")
    labels = rng.integers(0, classes, rows, dtype=np.int64)
    block = max(1, (64 << 20) // (classes * 4))

    def blocks():
        for first in range(0, rows, block):
            y = labels[first:first + block]
            z = rng.standard_normal((len(y), classes), dtype=np.float32) * 2
            # 70% of the rows put a margin on their label, the rest on a wrong class.
            target = np.where(rng.random(len(y)) < 0.7, y, (y + 1) % classes)
            z[np.arange(len(y)), target] += 8
            yield z

    bu.save_npy_blocks(logits_path, (rows, classes), np.float32, blocks())
    np.save(labels_path, labels)
    return logits_path, labels_path


def run_json(argv, env=None):
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{argv} failed: {out.stderr}")
    return json.loads(out.stdout)


def times_of(result):
    t = result["times"]
    return bu.Times(t["wall"], t["user"], t["sys"])


def fmt(t):
    return f"{t.wall:.3f} ({t.user:.2f} + {t.sys:.2f})"


def compare_shape(args, tmp, shape, server):
    rows, classes = (int(v) for v in shape.split("x"))
    calib = os.path.join(args.build, "calib")
    logits, labels = make_files(tmp, rows, classes)
    files = ["--logits", logits, "--labels", labels]
    me = [sys.executable, os.path.abspath(__file__), "--threads", str(args.threads),
          "--logits", logits, "--labels", labels, "--worker"]
    tuned_env = {**os.environ, **TUNED_MALLOC}
    runs = {k: [] for k in ("calib", "calibd", "calibd_server", "torch", "naive")}
    report = run_json([calib, "eval", *files, "--json", "-"])["metrics"]
    torch_metrics = None
    for _ in range(args.repeats):
        runs["calib"].append(bu.run_timed([calib, "eval", *files]))
        before = bu.process_cpu(server.pid)
        runs["calibd"].append(bu.run_timed([calib, "eval", *files, "--server",
                                            server.address]))
        after = bu.process_cpu(server.pid)
        runs["calibd_server"].append(bu.Times(0, after.user - before.user,
                                              after.sys - before.sys))
        result = run_json([*me, "metrics"], env=tuned_env)
        torch_metrics = result["metrics"]
        runs["torch"].append(times_of(result))
        if not args.skip_naive:
            runs["naive"].append(times_of(run_json([*me, "naive"])))
    med = {k: bu.median_times(v) for k, v in runs.items() if v}
    check = max(abs(report[k] - torch_metrics[k]) for k in ("nll", "brier", "accuracy", "ece"))
    if shape not in args.fit_shapes.split(","):
        return med, check, None, None, None, None

    fit_runs = {k: [] for k in ("calib_fit", "calib_nofit", "lbfgs", "lbfgs_wolfe")}
    fit_t = {}
    # The fit on every row, as PyTorch's: no cap on the logits kept for it.
    whole = ["--fit-store-bytes", str(1 << 40)]
    for _ in range(args.fit_repeats):
        fit_runs["calib_nofit"].append(bu.run_timed([calib, "eval", *files, *whole]))
        fit_runs["calib_fit"].append(bu.run_timed([calib, "eval", *files, *whole,
                                                   "--fit-temperature"]))
        result = run_json([*me, "fits"])
        for name in ("lbfgs", "lbfgs_wolfe"):
            fit_runs[name].append(times_of(result[name]))
            fit_t[name] = result[name]["temperature"]
    fit_t["calib"] = run_json([calib, "eval", *files, *whole, "--fit-temperature",
                               "--json", "-"])["temperature_scaling"]["temperature"]
    optimum = run_json([*me, "optimum"])["temperature"]
    fmed = {k: bu.median_times(v) for k, v in fit_runs.items()}
    calib_fit = bu.Times(*(getattr(fmed["calib_fit"], f) - getattr(fmed["calib_nofit"], f)
                           for f in ("wall", "user", "sys")))
    return med, check, fmed, calib_fit, fit_t, optimum


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=bu.default_build_dir())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fit-repeats", type=int, default=3)
    parser.add_argument("--shapes", default="100000x1000,8192x50257")
    parser.add_argument("--fit-shapes", default="100000x1000,8192x50257",
                        help="the shapes of --shapes to fit temperatures on too")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--worker", choices=("metrics", "naive", "warm", "fits", "optimum"))
    parser.add_argument("--logits")
    parser.add_argument("--labels")
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return

    metric_rows, fit_rows = [], []
    with tempfile.TemporaryDirectory() as tmp, \
            bu.Server([os.path.join(args.build, "calibd"), "--threads",
                       str(args.threads)]) as server:
        for shape in args.shapes.split(","):
            med, check, fmed, calib_fit, fit_t, optimum = compare_shape(
                args, tmp, shape, server)
            label = " x ".join(f"{int(v):,}" for v in shape.split("x"))
            torch_wall = med["torch"].wall
            metric_rows.append([
                label, fmt(med["calib"]), fmt(med["calibd"]),
                f"{med['calibd_server'].user:.2f} + {med['calibd_server'].sys:.2f}",
                fmt(med["torch"]), fmt(med["naive"]) if "naive" in med else "-",
                f"{med['calib'].wall / torch_wall:.1%}",
                f"{med['calibd'].wall / torch_wall:.1%}", f"{check:.1e}"])
            print(metric_rows[-1], flush=True)
            if fmed is None:
                continue
            fit_rows.append([
                label, f"{optimum:.6f}",
                f"{calib_fit.wall:.3f} ({abs(fit_t['calib'] - optimum) / optimum:.0e})",
                f"{fmed['lbfgs_wolfe'].wall:.3f} "
                f"({abs(fit_t['lbfgs_wolfe'] - optimum) / optimum:.0e})",
                f"{fmed['lbfgs'].wall:.3f} ({abs(fit_t['lbfgs'] - optimum) / optimum:.0e})",
                f"{fmed['lbfgs_wolfe'].wall / calib_fit.wall:.1f}x",
                f"{fmed['lbfgs'].wall / calib_fit.wall:.1f}x"])
            print(fit_rows[-1], flush=True)

    print(f"\n{bu.machine()}; {args.threads} threads everywhere; medians of "
          f"{args.repeats} (metrics) and {args.fit_repeats} (fits), runs alternated.\n")
    print("Seconds: wall (user + sys).\n")
    print(bu.markdown_table(
        ["float32 logits", "calib in-process", "calib via calibd", "calibd's CPU",
         "PyTorch, tuned", "PyTorch, naive", "calib / PyTorch", "via calibd / PyTorch",
         "max |diff|"], metric_rows))
    print("\nTemperature fit, seconds (|T - T*| / T*); calib's is its process with the fit "
          "minus without:\n")
    print(bu.markdown_table(
        ["float32 logits", "T* (SciPy)", "calib", "LBFGS strong-Wolfe",
         "LBFGS lr 0.01 (original)", "strong-Wolfe / calib", "original / calib"],
        fit_rows))


if __name__ == "__main__":
    main()
