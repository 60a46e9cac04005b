"""Measuring a benchmark command as a whole process tree: wall time, CPU time, peak memory.

Shared by ``peers.py`` and ``scaling.py``. A command runs on the first ``cores`` CPUs
(``sched_setaffinity``, inherited by every worker and thread it starts); a thread samples
/proc for the process and its descendants. Memory is the peak of the summed PSS of the tree
(PSS so that pages forked workers share count once) and the largest single-process peak RSS
(each process's own high-water mark, and ``wait4``'s for the root). CPU time is the larger
of ``wait4``'s (which counts only the descendants the root waited for) and the sum of the
sampled per-process times.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
import time
from pathlib import Path


def load_average() -> float:
    return os.getloadavg()[0]


@dataclasses.dataclass
class Measured:
    seconds: float
    peak_tree_pss_mb: float
    max_rss_mb: float
    cpu_seconds: float
    returncode: int


_TICKS = os.sysconf("SC_CLK_TCK")


class _TreeSampler:
    """Polls /proc for a process and its descendants: summed PSS, each one's peak RSS and CPU time.

    The whole process table is scanned for new descendants only every 4th sample once
    the run is past its start (``settled``): it is the expensive part, and workers appear
    at the start. Until then every sample scans it: forked workers share the main
    process's pages, so PSS summed before they are found would count only the main
    process's share of those pages and miss the peak of a short run.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.tree = [root]
        self.samples = 0
        self.peak_pss_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.cpu_ticks: dict[int, int] = {}

    def sample(self, settled: bool = True) -> None:
        if not settled or self.samples % 4 == 0:
            self.tree = self._descendants()
        self.samples += 1
        pss = 0
        for pid in self.tree:
            fields = _stat_fields(pid)
            if fields is None:
                continue
            self.cpu_ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
            pss += _field_kb(f"/proc/{pid}/smaps_rollup", "Pss:")
            self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), _field_kb(f"/proc/{pid}/status", "VmHWM:"))
        self.peak_pss_kb = max(self.peak_pss_kb, pss)

    def _descendants(self) -> list[int]:
        parents: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                fields = _stat_fields(int(entry.name))
                if fields is not None:
                    parents[int(entry.name)] = int(fields[1])
        tree, frontier = [self.root], {self.root}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier}
            tree.extend(frontier)
        return tree


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (field 3 onwards), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].decode().split()
    except (OSError, IndexError):
        return None


def _field_kb(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def measure(command: list[str], cores: int, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Measured:
    """Run ``command`` on the first ``cores`` CPUs (in ``cwd``); wall time, peak tree PSS, max RSS, CPU time."""
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    with open(log, "wb") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        )
        sampler = _TreeSampler(process.pid)
        done = threading.Event()

        def poll() -> None:
            # reading smaps_rollup walks the page tables: sampled often, it would slow the runs it
            # measures; so every 0.05 s for the first 3 s (short runs peak there), then every 0.25 s
            while not done.wait(0.05 if time.perf_counter() - started < 3 else 0.25):
                sampler.sample(settled=time.perf_counter() - started >= 3)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        done.set()
        thread.join()
    cpu = max(usage.ru_utime + usage.ru_stime, sum(sampler.cpu_ticks.values()) / _TICKS)
    max_rss = max([usage.ru_maxrss, *sampler.hwm_kb.values()]) / 1024
    return Measured(seconds, sampler.peak_pss_kb / 1024, max_rss, cpu, os.waitstatus_to_exitcode(status))


# ---------------------------------------------------------------- counting what each peer wrote
