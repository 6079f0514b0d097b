"""What the kernel counted: a process's CPU time and peak memory, and where the CPUs went
during a run (what is counted: ``bench/README.md``, *Where the CPUs went*).

Why the kernel's accounting (``/proc``): the consumer is measured as it ships, a process of its
own, so its cost is read from outside rather than estimated from inside; and on 2 cores a rate
alone does not say which process bounds it. Why :data:`MIN_WINDOW_S`: the kernel counts CPU time
in ticks of 10 ms, too coarse for the second-long windows of small topics.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from native.servers.process import run_dir

# What the report shows, and the harness processes (pid files) each one sums.
GROUPS: dict[str, tuple[str, ...]] = {
    "FerretDB": ("ferretdb",),
    "PostgreSQL": ("postgres",),
    "Kafka + ZooKeeper": ("kafka", "zookeeper"),
}
CONSUMER = "consumer"
# Shorter windows are not measured: CPU time is counted in ticks of 10 ms.
MIN_WINDOW_S = 2.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parent_and_cpu_s(pid: int) -> tuple[int, float]:
    """The process's parent, and its CPU seconds so far (user+system, all threads), from one
    read of ``/proc/<pid>/stat``. OSError when the process is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])  # proc(5): 4, 14, 15
    return ppid, (utime + stime) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The resident-set high-water mark (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True)
class Snapshot:
    machine_busy: int  # ticks, every CPU
    machine_total: int
    cpu_s: dict[str, float]  # per group, its whole process tree


@dataclass
class CpuUsage:
    """CPU between two snapshots: per group, in cores (1.0 = one CPU busy the whole time)."""

    cpus: int
    machine_cores: float = float("nan")
    cores: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # groups whose servers were not found


def snapshot(consumer_pid: int) -> Snapshot:
    processes = _processes()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (parent, _) in processes.items():
        children[parent].append(pid)
    roots = {CONSUMER: [consumer_pid]} | {
        group: [pid for name in names if (pid := _pid_of(name)) is not None]
        for group, names in GROUPS.items()
    }
    cpu_s = {
        group: sum(_tree_cpu_s(pid, processes, children) for pid in pids)
        for group, pids in roots.items()
        if pids
    }
    busy, total = _machine_ticks()
    return Snapshot(busy, total, cpu_s)


def between(windows: list[tuple[Snapshot, Snapshot]], seconds: float) -> CpuUsage:
    """What each group used over ``windows`` (first and last snapshot of each), ``seconds`` in
    all; a group missing from any snapshot was not found."""
    cpus = os.cpu_count() or 1
    usage = CpuUsage(cpus)
    if seconds <= 0:
        return usage
    busy = sum(last.machine_busy - first.machine_busy for first, last in windows)
    total = sum(last.machine_total - first.machine_total for first, last in windows)
    if total > 0:
        usage.machine_cores = cpus * busy / total
    for group in (CONSUMER, *GROUPS):
        if all(group in first.cpu_s and group in last.cpu_s for first, last in windows):
            spent = sum(last.cpu_s[group] - first.cpu_s[group] for first, last in windows)
            usage.cores[group] = spent / seconds
        else:
            usage.missing.append(group)
    return usage


class Meter:
    """CPU use summed over several timed stretches: a ceiling times only its server calls.

    ``client_pid`` is counted as the consumer group: the bench's own process for a ceiling.
    """

    def __init__(self, client_pid: int) -> None:
        self._client_pid = client_pid
        self._started: tuple[float, Snapshot] | None = None
        self._seconds = 0.0
        self._windows: list[tuple[Snapshot, Snapshot]] = []

    def start(self) -> None:
        self._started = (time.perf_counter(), snapshot(self._client_pid))

    def stop(self) -> None:
        assert self._started is not None, "stop() without start()"
        (began, first), last = self._started, snapshot(self._client_pid)
        self._seconds += time.perf_counter() - began
        self._windows.append((first, last))
        self._started = None

    def usage(self) -> CpuUsage:
        if self._seconds < MIN_WINDOW_S:
            return CpuUsage(os.cpu_count() or 1)  # too short to count: nothing measured
        return between(self._windows, self._seconds)


def _pid_of(name: str) -> int | None:
    """The harness's pid file; PostgreSQL's is the postmaster's own, in its data directory."""
    path = run_dir() / f"{name}.pid"
    if name == "postgres":
        path = run_dir() / "postgres" / "data" / "postmaster.pid"
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _processes() -> dict[int, tuple[int, float]]:
    """Every live process: its parent and its CPU seconds so far."""
    found: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):  # gone meanwhile
                found[int(entry.name)] = parent_and_cpu_s(int(entry.name))
    return found


def _tree_cpu_s(
    root: int, processes: dict[int, tuple[int, float]], children: dict[int, list[int]]
) -> float:
    """CPU seconds of ``root`` and every live descendant."""
    seconds, todo, seen = 0.0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        if pid in processes:
            seconds += processes[pid][1]
        todo.extend(children.get(pid, ()))
    return seconds


def _machine_ticks() -> tuple[int, int]:
    with open("/proc/stat") as handle:
        # user nice system idle iowait irq softirq steal; guest time is already in user
        values = [int(v) for v in handle.readline().split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)
