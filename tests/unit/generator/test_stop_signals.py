"""A signal that lands just as a seed settles is ignored without a word.

`StopSignals.settle()` sets SIGINT and SIGTERM to be ignored once the seed's outcome is decided. A
Ctrl-C landing inside that switch made CPython print "OSError: Signal 2 ignored due to race
condition" with a traceback on stderr, from a seed that then finished and exited 0 (seen once in CI,
in test_truncate_atomic.py's Ctrl-C loop). A real signal hits that window rarely; here the child
calls CPython's own C-level signal handler, the function every signal to a Python process meets first,
just after the switch: the signal is then due with SIG_IGN recorded, which is the state the race leaves.
"""

import signal
import subprocess
import sys

TRIP = """
import ctypes, signal, sys
from retailflow_generator.seed import StopSignals

getsig = ctypes.pythonapi.PyOS_getsig
getsig.restype, getsig.argtypes = ctypes.c_void_p, (ctypes.c_int,)
stop = StopSignals().install()
address = getsig(signal.SIGINT)  # CPython's C-level handler, set by install()
assert signal.getsignal(signal.SIGINT) == stop._handle and address not in (None, 0, 1), "SIGINT is not handled"
c_handler = ctypes.CFUNCTYPE(None, ctypes.c_int)(address)
stop.settle()
"""


def child(code: str, ignoring=()) -> subprocess.CompletedProcess:
    """Run ``TRIP`` then ``code`` in a Python process started with SIGINT and SIGTERM at their default
    actions (a background job, as CI may run the suite, starts ignoring SIGINT, and install() keeps
    that), but the signals in ``ignoring`` ignored."""
    def start() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN if signum in ignoring else signal.SIG_DFL)

    return subprocess.run([sys.executable, "-c", TRIP + code], capture_output=True, text=True, timeout=60,
                          preexec_fn=start)


def test_a_signal_caught_as_a_seed_settles_prints_nothing():
    done = child("""
c_handler(signal.SIGINT)
c_handler(signal.SIGTERM)
print("settled quietly", flush=True)
""")
    assert (done.returncode, done.stdout, done.stderr) == (0, "settled quietly\n", "")


def test_reports_the_seed_did_not_cause_still_print():
    """Only the report of a signal the seed set to be ignored is dropped: here SIGTERM was ignored from
    the start (settle() left it alone), and an unrelated exception in a finalizer is not a report at all."""
    done = child("""
c_handler(signal.SIGTERM)

class Closing:
    def __del__(self):
        raise OSError("Signal 2 failed to close")

Closing()
""", ignoring={signal.SIGTERM})
    assert done.returncode == 0, done.stderr
    assert "OSError: Signal 15 ignored due to race condition" in done.stderr
    assert "OSError: Signal 2 failed to close" in done.stderr
