"""The native lab's child processes: found by pid file, stopped within bounds, never mistaken."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from native import processes
from native.layout import Layout


def lab(tmp_path: Path) -> Layout:
    home = Layout(tmp_path / "lab")
    home.create()
    return home


def test_a_child_that_handles_sigterm_is_stopped_with_its_whole_group(tmp_path: Path) -> None:
    home = lab(tmp_path)
    # A parent that starts a grandchild: both must go, as with a server behind a launcher.
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    proc = processes.spawn(home, "child", [sys.executable, "-c", script], os.environ, tmp_path)
    time.sleep(0.5)
    assert len(processes.group_members(proc.pid)) == 2
    assert processes.stop(home, "child", timeout_s=10, proc=proc) == "stopped"
    assert processes.group_members(proc.pid) == []
    assert proc.returncode == -signal.SIGTERM
    assert not processes.pidfile(home, "child").exists()


def test_a_child_that_ignores_its_signal_is_killed_after_the_limit(tmp_path: Path) -> None:
    home = lab(tmp_path)
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    proc = processes.spawn(home, "stubborn", [sys.executable, "-c", script], os.environ, tmp_path)
    time.sleep(0.5)
    began = time.monotonic()
    how = processes.stop(home, "stubborn", timeout_s=1, proc=proc)
    assert how == "killed (ignored SIGTERM for 1s)"
    assert time.monotonic() - began < 10
    assert proc.returncode == -signal.SIGKILL


def test_a_pid_file_naming_another_process_is_not_acted_on(tmp_path: Path) -> None:
    home = lab(tmp_path)
    proc = processes.spawn(home, "other", ["sleep", "60"], os.environ, tmp_path)
    try:
        path = processes.pidfile(home, "other")
        pid, started = path.read_text().split()
        # Same pid, another start time: a reused pid after a reboot. It must be left alone.
        path.write_text(f"{pid} {int(started) + 1}\n")
        assert processes.recorded(path) is None
        assert processes.stop(home, "other", timeout_s=1) is None
        assert proc.poll() is None, "an unrelated process was signalled"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_stopping_what_is_not_running_is_a_no_op(tmp_path: Path) -> None:
    assert processes.stop(lab(tmp_path), "never-started") is None
