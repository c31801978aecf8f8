"""Helpers shared by the bench/*.py scripts: servers on a free loopback port, timed
processes (wall, user and sys seconds), .npy files written block by block, the
machine's description and Markdown tables.

Only for the bench scripts; run them with /usr/bin/python3.
"""

import os
import platform
import re
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Times:
    wall: float
    user: float
    sys: float

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def median_times(runs: Sequence[Times]) -> Times:
    return Times(statistics.median(r.wall for r in runs),
                 statistics.median(r.user for r in runs),
                 statistics.median(r.sys for r in runs))


def run_timed(argv: Sequence[str], env: Optional[dict] = None) -> Times:
    """Runs argv to completion (stdout discarded); its wall time and its own CPU times."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): "
                           f"{proc.stderr.read().decode(errors='replace')}")
    proc.stderr.close()
    return Times(wall, usage.ru_utime, usage.ru_stime)


def process_cpu(pid: int) -> Times:
    """The user and sys seconds a running process has used so far (wall = now)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return Times(time.perf_counter(), int(fields[11]) / CLOCK_TICKS,
                 int(fields[12]) / CLOCK_TICKS)


def memory_kib(pid: int) -> dict:
    """VmRSS and VmHWM of a running process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


class Server:
    """A server binary on 127.0.0.1 with a free port; stopped by its PID (SIGTERM)."""

    def __init__(self, argv: Sequence[str]):
        self.proc = subprocess.Popen([*argv, "--listen", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (\S+)", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"{argv[0]} did not start: {line!r}")
        self.address = match.group(1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def machine() -> str:
    """'CPU model, N vCPUs, M GiB, kernel, date, load' (lscpu, /proc/meminfo)."""
    model, cpus = platform.processor() or "unknown CPU", str(os.cpu_count())
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "CPU(s)":
                cpus = value.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / (1 << 20)
    # Other work on the machine skews every timing: say how much there was.
    load = os.getloadavg()[0]
    return (f"{model}, {cpus} vCPUs, {mem_gib:.0f} GiB, Linux {platform.release()}, "
            f"{time.strftime('%Y-%m-%d', time.gmtime())}, load average {load:.1f}")


def save_npy_blocks(path: str, shape: Sequence[int], dtype, blocks: Iterable) -> None:
    """Writes a C-order .npy as np.save does, its header and then its data through
    write(), from row blocks, so that the array is never whole in memory. (A file
    written through a memory map instead sits in the page cache in larger folios, and
    reads several times faster through a mapping than one np.save wrote.)"""
    import numpy as np
    dtype = np.dtype(dtype)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": dtype.str, "fortran_order": False, "shape": tuple(shape)})
        for block in blocks:
            f.write(memoryview(np.ascontiguousarray(block, dtype=dtype)).cast("B"))


def markdown_table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def default_build_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build")
