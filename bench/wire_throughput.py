#!/usr/bin/python3
"""The wire's throughput against calibd's: `calib eval --server` streams the same .npy
files to bench/null_service (parses every message, discards it) and to calibd (evaluates
it), alternating, and prints the median GB/s of each and their ratio per --chunk-bytes.

  /usr/bin/python3 bench/wire_throughput.py [--build build] [--rows 100000 --classes 1000]
      [--chunk-bytes 262144,1048576,4194304,16777216] [--repeats 5] [--threads 2]

GB/s counts the logits and labels bytes over the CLI's whole process (file mapping,
connection and Report included). Needs the calib, calibd and null_service targets built.
"""

import argparse
import os
import tempfile

import numpy as np

import bench_util as bu


def make_files(directory: str, rows: int, classes: int) -> tuple:
    rng = np.random.default_rng(0)
    logits_path = os.path.join(directory, "logits.npy")
    labels_path = os.path.join(directory, "labels.npy")
    blocks = (rng.standard_normal((min(4096, rows - first), classes), dtype=np.float32) * 3
              for first in range(0, rows, 4096))
    bu.save_npy_blocks(logits_path, (rows, classes), np.float32, blocks)
    np.save(labels_path, rng.integers(0, classes, rows, dtype=np.int64))
    return logits_path, labels_path, rows * classes * 4 + rows * 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=bu.default_build_dir())
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--chunk-bytes", default="262144,1048576,4194304,16777216")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib", help="this calib instead of the build's")
    parser.add_argument("--calibd", help="this calibd instead of the build's")
    args = parser.parse_args()
    calib = args.calib or os.path.join(args.build, "calib")
    calibd = args.calibd or os.path.join(args.build, "calibd")
    null_service = os.path.join(args.build, "bench", "null_service")

    rows = []
    with tempfile.TemporaryDirectory() as tmp, \
            bu.Server([null_service]) as null, \
            bu.Server([calibd, "--threads", str(args.threads)]) as server:
        logits, labels, nbytes = make_files(tmp, args.rows, args.classes)
        for chunk in (int(c) for c in args.chunk_bytes.split(",")):
            times = {"null": [], "calibd": []}
            server_cpu = []
            for _ in range(args.repeats):
                for name, target in (("null", null), ("calibd", server)):
                    before = bu.process_cpu(target.pid)
                    times[name].append(bu.run_timed(
                        [calib, "eval", "--logits", logits, "--labels", labels, "--server", target.address,
                         "--chunk-bytes", str(chunk)]))
                    after = bu.process_cpu(target.pid)
                    if name == "calibd":
                        server_cpu.append(bu.Times(0, after.user - before.user,
                                                   after.sys - before.sys))
            null_t = bu.median_times(times["null"])
            calibd_t = bu.median_times(times["calibd"])
            cpu = bu.median_times(server_cpu)
            rows.append([f"{chunk >> 10} KiB", f"{nbytes / null_t.wall / 1e9:.2f}",
                         f"{nbytes / calibd_t.wall / 1e9:.2f}",
                         f"{null_t.wall / calibd_t.wall:.0%}",
                         f"{calibd_t.user:.2f} / {calibd_t.sys:.2f}",
                         f"{cpu.user:.2f} / {cpu.sys:.2f}"])
            print(rows[-1], flush=True)

    print(f"\n{args.rows:,} x {args.classes:,} float32 logits + int64 labels "
          f"({nbytes / 1e9:.2f} GB), calibd --threads {args.threads}, "
          f"median of {args.repeats}, loopback\n{bu.machine()}\n")
    print(bu.markdown_table(
        ["--chunk-bytes", "null service GB/s", "calibd GB/s", "calibd / null",
         "CLI user / sys s", "calibd user / sys s"], rows))


if __name__ == "__main__":
    main()
