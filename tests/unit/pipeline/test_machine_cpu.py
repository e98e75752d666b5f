"""The benchmarks' account of the machine's CPU (``benchlib.machine_cpu``), which ``bench_ingest.py``'s
floor in CPU is computed from: it counts work done by any thread of any process, and only that. No
server."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from benchlib import MachineCPU, cores, machine_cpu  # noqa: E402

pytestmark = pytest.mark.skipif(machine_cpu() is None, reason="no /proc/stat on this system")


def spin(seconds: float) -> None:
    """Keep one core busy for ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_busy_thread_counts_as_work_of_the_machine():
    start = time.monotonic()
    before = machine_cpu()
    worker = threading.Thread(target=spin, args=(0.4,))
    worker.start()
    worker.join()
    used = machine_cpu() - before
    wall = time.monotonic() - start
    # the clock ticks every 10 ms, and whatever else ran meanwhile counts too: at least the spin
    assert used.work >= 0.35, used
    # and at most what the cores had: work and steal are apart, and together no more than every core's
    # wall time between the two readings (10 ticks a core of slack for the clock's rounding); figures
    # since boot, or in ticks rather than seconds, would be far above it
    slack = 10 / os.sysconf("SC_CLK_TCK") * cores()
    assert 0 <= used.stolen and used.work + used.stolen <= wall * cores() + slack, (used, wall, cores())


def test_idle_and_io_wait_are_not_work_and_steal_is_apart(tmp_path):
    # proc(5): cpu user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks
    stat = tmp_path / "stat"
    stat.write_text("cpu  1000 200 300 40000 5000 60 70 800 0 0\ncpu0 500 100 150 20000 2500 30 35 400 0 0\n")
    tick = os.sysconf("SC_CLK_TCK")
    assert machine_cpu(str(stat)) == MachineCPU((1000 + 200 + 300 + 60 + 70) / tick, 800 / tick)


def test_no_stat_file_means_no_figure(tmp_path):
    assert machine_cpu(str(tmp_path / "missing")) is None


def test_a_difference_subtracts_each_part():
    assert MachineCPU(5.0, 1.5) - MachineCPU(2.0, 0.5) == MachineCPU(3.0, 1.0)


def test_the_cores_are_those_the_stat_file_sums_over(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  4 0 0 0 0 0 0 0 0 0\ncpu0 1 0 0 0 0 0 0 0 0 0\ncpu1 1 0 0 0 0 0 0 0 0 0\n"
                    "cpu2 1 0 0 0 0 0 0 0 0 0\ncpu3 1 0 0 0 0 0 0 0 0 0\nintr 1 2 3\n")
    assert cores(str(stat)) == 4
