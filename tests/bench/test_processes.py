"""The cost bench's CPU accounting (bench/processes.py) against real processes."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.processes import PlatformProcesses, ProcessTimes, cpu_seconds_by_group
from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401 (no Redis needed)

pytestmark = pytest.mark.unit

BURN = "import time\nstarted = time.process_time()\nwhile time.process_time() - started < 0.4: pass"


def test_a_child_that_burns_cpu_and_exits_between_snapshots_is_counted(tmp_path):
    # The parent is the platform's root (its pid in supervisord.pid); the child
    # is born and reaped between the snapshots, as a PostgreSQL backend is
    # whose connection opens and closes during a run.
    parent = subprocess.Popen(["bash", "-c", f"sleep 0.3; {sys.executable} -c '{BURN}'; sleep 30"])
    try:
        (tmp_path / "supervisord.pid").write_text(str(parent.pid))
        processes = PlatformProcesses(tmp_path, redis_port=0)
        before = processes.snapshot()
        assert before[parent.pid].group == "other"
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
        deadline = time.monotonic() + 20
        while not children.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)  # the child is born...
        while children.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)  # ...and reaped
        used = cpu_seconds_by_group(before, processes.snapshot())
    finally:
        parent.kill()
        parent.wait()
    assert 0.4 <= used["other"] < 1.5  # the child's 0.4 s of burning (and its start-up), though it is gone


def test_an_exited_process_is_not_counted_twice():
    parent_before = ProcessTimes(1, 0, "postgresql", own_ticks=100, children_ticks=0, command="postgres")
    backend_before = ProcessTimes(2, 1, "postgresql", own_ticks=50, children_ticks=0, command="postgres: u db")
    # The backend used 30 more ticks, then exited; the postmaster reaped its lifetime (80).
    parent_after = ProcessTimes(1, 0, "postgresql", own_ticks=110, children_ticks=80, command="postgres")
    used = cpu_seconds_by_group({1: parent_before, 2: backend_before}, {1: parent_after})
    assert used["postgresql"] == pytest.approx((10 + 30) / os.sysconf("SC_CLK_TCK"))
