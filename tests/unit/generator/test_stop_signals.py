"""A signal that lands just as a seed settles is ignored without a word.

`StopSignals.settle()` sets SIGINT and SIGTERM to be ignored once the seed's outcome is decided. A
Ctrl-C landing inside that switch made CPython print "OSError: Signal 2 ignored due to race
condition" with a traceback under the seed's summary (seen once in CI, in test_truncate_atomic.py's
Ctrl-C loop). One Ctrl-C rarely hits the window, so the child here settles over and over while this
process keeps signalling it, until CPython has made that report a few times.
"""

import os
import signal
import subprocess
import sys

CHILD = """
import signal, sys, time
from retailflow_generator.seed import StopSignals  # numpy with it: its OpenBLAS thread is in the process

stop = StopSignals().install()
stop.settle()
reports = []
settled_hook = sys.unraisablehook

def counting(unraisable):  # sees CPython's reports before the seed's hook does
    if unraisable.exc_type is OSError and "race condition" in str(unraisable.exc_value):
        reports.append(str(unraisable.exc_value))
    settled_hook(unraisable)

sys.unraisablehook = counting
print("settled", flush=True)
switches, until = 0, time.monotonic() + 60
while len(reports) < 3 and time.monotonic() < until:
    signal.signal(signal.SIGINT, stop._handle)  # armed again, as install() left it
    stop.settle()
    switches += 1
ignored = int(next(line for line in open("/proc/self/status") if line.startswith("SigIgn:")).split()[1], 16)
print(switches, len(reports), signal.getsignal(signal.SIGINT) is signal.SIG_IGN, bool(ignored >> (signal.SIGINT - 1) & 1),
      flush=True)
"""


def test_a_ctrl_c_landing_as_a_seed_settles_prints_nothing_and_stays_ignored():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "settled\n", child.stderr.read()
    while child.poll() is None:
        try:
            os.kill(child.pid, signal.SIGINT)
        except ProcessLookupError:  # it has just exited
            break
    out, err = child.communicate(timeout=60)
    switches, reports, recorded, kernel = out.split()
    assert int(reports) == 3, f"the window was not hit in {switches} switches: nothing was tested"
    assert err == ""
    assert child.returncode == 0
    assert (recorded, kernel) == ("True", "True"), "SIGINT is ignored, by Python and by the kernel"


def test_other_unraisable_exceptions_are_still_reported_once_a_seed_has_settled():
    code = """
from retailflow_generator.seed import StopSignals
StopSignals().install().settle()

class Closing:
    def __del__(self):
        raise OSError("Signal 2 failed to close")

Closing()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "OSError: Signal 2 failed to close" in done.stderr
