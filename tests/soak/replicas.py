"""The consumer replicas: real ``python -m quotes_consumer`` processes, watched every second.

Why from outside: a replica that dies on a fault it should ride out, and memory that creeps,
show only in the process. A replica that dies unasked is reported with its log tail and
replaced (a bounded number of times), so that the rest of the soak runs and is accounted for.
"""

from __future__ import annotations

import threading
from itertools import pairwise
from pathlib import Path

from tests.integration.pipeline import ConsumerProcess

MAX_REPLICAS = 10  # two, one per SIGKILL fault, and replacements for the ones that died unasked


class Replica(ConsumerProcess):
    """A replica, its resident-set samples (KiB), and whether the soak itself stopped it."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str) -> None:
        super().__init__(env, workdir, name)
        self.name = name
        self.rss_kb: list[int] = []
        self.killed = False  # by the soak: its death is no failure
        self.reported = False

    def sample_rss(self) -> None:
        if self.proc is None or not self.alive():
            return
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return  # it exited between the check and the read
        self.rss_kb += [int(line.split()[1]) for line in status.splitlines() if "VmRSS:" in line]

    def tail(self, lines: int = 12) -> str:
        """Where it was in its own code (the last frames of the package in its log), then the
        log's last lines: what it was doing, and what went wrong."""
        log = self.log().splitlines()
        own = [f"{a.strip()}: {b.strip()}" for a, b in pairwise(log) if "/quotes_consumer/" in a]
        return "\n".join([f"{self.log_path}:", *own[-3:], "...", *log[-lines:]])


class Replicas:
    """The group's replicas, started in turn as replica-1, replica-2, ..."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.all: list[Replica] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        threading.Thread(target=self._sample, name="soak-rss", daemon=True).start()

    def start(self) -> Replica:
        replica = Replica(self.env, self.workdir, f"replica-{len(self.all) + 1}")
        self.all.append(replica)
        try:
            replica.start()  # waits, bounded, for /healthz
        except AssertionError as error:
            replica.reported = True
            self.failures.append(f"{replica.name} did not start: {str(error).splitlines()[0]}")
        return replica

    def live(self) -> list[Replica]:
        return [replica for replica in self.all if replica.alive()]

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            for replica in list(self.all):
                replica.sample_rss()

    def heal(self) -> None:
        """Report each replica that died unasked, once, and start one in its place."""
        for replica in list(self.all):
            if replica.alive() or replica.killed or replica.reported or replica.proc is None:
                continue
            replica.reported = True
            code = replica.proc.returncode
            self.failures.append(f"{replica.name} exited unasked with {code}; {replica.tail()}")
            if len(self.all) < MAX_REPLICAS:
                self.start()

    def stop(self) -> None:
        """SIGTERM every live replica, as ``docker compose stop`` does: each must exit 0."""
        self._stop.set()
        for replica in self.live():
            replica.killed = True
            try:
                code: int | None = replica.terminate()
            except AssertionError:
                code = None  # ignored SIGTERM, then killed
            if code != 0:
                self.failures.append(f"{replica.name} exited {code} on SIGTERM; {replica.tail()}")

    def kill_all(self) -> None:
        """On any way out: no replica outlives the soak (SIGKILL ends a stopped one too)."""
        self._stop.set()
        for replica in self.all:
            replica.killed = True
            replica.kill()
