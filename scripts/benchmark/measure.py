"""Measuring one benchmark subprocess (wall and CPU time, peak RSS of its whole tree and of its
largest process) and printing figures as tables: shared by scripts/bench.py and its parts."""

import json
import logging
import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MB = 1e6
SAMPLE_INTERVAL_S = 0.02

logger = logging.getLogger("bench")


@dataclass
class Run:
    """One measured subprocess (and all its children)."""

    wall_s: float
    cpu_s: float  # user + sys of the whole tree
    peak_rss_mb: float  # whole tree, sampled every SAMPLE_INTERVAL_S
    peak_anon_mb: float  # whole tree, anonymous memory only (RSS minus file-backed/shared pages)
    peak_process_mb: float  # the largest single process's own peak (VmHWM)
    peak_process_anon_mb: float  # the largest single process's anonymous memory, sampled
    marks: dict = field(default_factory=dict)  # seconds from start to log lines of interest
    result: dict = field(default_factory=dict)  # what the child reported on its last stdout line


class TreeSampler(threading.Thread):
    """Samples RSS of a process and all its descendants until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.peak_rss = self.peak_anon = self.peak_process = self.peak_process_anon = 0
        self._hwm: dict[int, int] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(SAMPLE_INTERVAL_S)

    def sample(self) -> None:
        try:
            processes = [self.root] + self.root.children(recursive=True)
        except self._psutil.Error:
            return
        rss = anon = 0
        for process in processes:
            try:
                memory = process.memory_info()
            except self._psutil.Error:
                continue
            rss += memory.rss
            anon += memory.rss - memory.shared
            self.peak_process_anon = max(self.peak_process_anon, memory.rss - memory.shared)
            self._hwm[process.pid] = max(self._hwm.get(process.pid, 0), proc_status_bytes("VmHWM", process.pid), memory.rss)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_anon = max(self.peak_anon, anon)
        self.peak_process = max(self._hwm.values(), default=0)

    def stop(self) -> None:
        self._done.set()
        self.join()


def proc_status_bytes(key: str, pid="self") -> int:
    """A memory line of /proc/<pid>/status in bytes (VmHWM: the peak RSS; VmRSS: the current one);
    0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(command: list[str], label: str, marks: tuple = ()) -> Run:
    """Run `command` to the end; raise with its stderr tail if it fails."""
    logger.info("run %s", label)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    sampler = TreeSampler(process.pid)
    sampler.start()
    seen: dict = {}
    stderr_tail: list[str] = []
    reader = threading.Thread(target=_watch_stderr, args=(process.stderr, marks, started, seen, stderr_tail), daemon=True)
    reader.start()
    stdout = process.stdout.read().decode()
    process.wait()
    wall = time.perf_counter() - started
    sampler.stop()
    reader.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(f"{label} failed ({process.returncode}): {' | '.join(stderr_tail[-5:])}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last_line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    result = json.loads(last_line) if last_line.startswith("{") else {}
    return Run(
        wall, cpu, sampler.peak_rss / MB, sampler.peak_anon / MB, sampler.peak_process / MB, sampler.peak_process_anon / MB,
        seen, result,
    )  # fmt: skip


def _watch_stderr(stream, marks: tuple, started: float, seen: dict, tail: list) -> None:
    # tqdm redraws with \r, so split on both; a mark is the first time a line contains its text.
    buffer = b""
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            break
        now = time.perf_counter() - started
        buffer += chunk
        *lines, buffer = buffer.replace(b"\r", b"\n").split(b"\n")
        for line in lines:
            text = line.decode(errors="replace").strip()
            if text:
                tail.append(text)
                del tail[:-20]
            for name, needle in marks:
                if name not in seen and needle in text:
                    seen[name] = now


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(header), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]
    lines = ["  ".join(header.rjust(width) for header, width in zip(headers, widths))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,d}"
    return str(value)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
