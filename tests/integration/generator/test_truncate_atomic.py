"""`seed --truncate` is atomic from the user's view: killed, interrupted or failing, it leaves the
previous rows as they were, says so truthfully, and leaves no file behind."""

import queue
import signal
import subprocess
import threading
import time
from datetime import date

import pymysql
import pytest
from conftest import GENERATOR, connect, mysql_env, rows, scalar
from retailflow_generator import db as db_module
from retailflow_generator import seed as seed_module
from retailflow_generator.db import GeneratorError, MySQLTarget
from retailflow_generator.seed import SeedRequest, run_seed
from test_seed import ARGS, TABLES, checksums, seed_in_process

pytestmark = pytest.mark.integration

#: big enough that the load is still running a second after it started
BIG = ["--customers", "3000", "--products", "300", "--orders", "250000", "--start", "2024-01-01",
       "--end", "2025-12-31", "--seed", "5", "--truncate"]


def tables(url):
    return sorted(r[0] for r in rows(url, "select table_name from information_schema.tables "
                                          "where table_schema = database()"))


def as_foreground_job() -> None:
    """Run in the child before it executes: SIGINT at its default, as a shell starts a foreground job.
    Started in the background without job control (``nohup … &``, some CI runners), the tests inherit
    SIGINT ignored, and so would the generator: Python installs its Ctrl-C handler only when SIGINT is
    not ignored at start, so the seed would run to its end whatever the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_big_truncate(url, tmp_path):
    """Start a big `seed --truncate` (TMPDIR pointed at an empty folder) and return it once rows are
    flowing into its shadow tables."""
    env = {**mysql_env(url), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([GENERATOR, "seed", *BIG], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=as_foreground_job)
    watcher = connect(url)
    try:
        with watcher.cursor() as cur:
            cur.execute("set session transaction isolation level read uncommitted")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    cur.execute("select count(*) from orders__new")
                    if cur.fetchone()[0] > 0:
                        return proc
                except pymysql.err.ProgrammingError:  # not created yet
                    pass
                time.sleep(0.05)
    finally:
        watcher.close()
    proc.kill()
    pytest.fail(f"the shadow tables never filled (exit {proc.poll()}): {proc.communicate()[1]}")


def interrupted_reads(fault: dict[str, int]):
    """pymysql's own read, and a read that counts the main thread's reads in ``fault["reads"]`` and raises
    KeyboardInterrupt, as a Ctrl-C does, right after read number ``fault["at"]``."""
    real_read = pymysql.connections.Connection._read_bytes

    def read_then_interrupt(self, n):
        data = real_read(self, n)
        if threading.current_thread() is threading.main_thread():
            fault["reads"] += 1
            if fault["reads"] == fault["at"]:
                raise KeyboardInterrupt
        return data

    return real_read, read_then_interrupt


def test_sigkill_during_truncate_leaves_the_previous_data_and_no_files(database, tmp_path):
    seed_in_process(database, *ARGS)
    before = checksums(database)
    proc = start_big_truncate(database, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # the server ends the killed session's transaction; the old tables were never touched
    assert checksums(database) == before
    assert list(tmp_path.iterdir()) == [], "no temporary file survives a SIGKILL"
    # the next seed clears the killed one's shadow tables and replaces the data
    seed_in_process(database, *ARGS[:-1], "12", "--truncate")
    assert checksums(database) != before
    assert tables(database) == ["customers", "order_items", "orders", "products"]


class StderrLines:
    """A subprocess's stderr, line by line as it comes, with a timeout."""

    def __init__(self, proc):
        self._lines = queue.Queue()
        self.all = []
        threading.Thread(target=self._read, args=(proc.stderr,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def next(self, timeout):
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return ""
        self.all.append(line or "")
        return line or ""


#: how long "at once" may take on a machine that also runs other suites: the seed's main thread must get
#: a core and the GIL from its loader thread, then this test's reader a core. Where the clean-up is held
#: (it never ends until released), a line within it can only have come before the clean-up ended
AT_ONCE = 5.0
STOPPING = ("retailflow-generator seed: stopping: waiting for the server to roll back the unfinished load into the"
            " <table>__new tables, then dropping them; the previous data stays ({} leaves at once)\n")


@pytest.mark.parametrize("signum, second, code, word", [
    (signal.SIGINT, "a second Ctrl-C", 130, "interrupted"),
    # a supervisor stopping the seed: SIGTERM killed it and left the <table>__new tables behind
    (signal.SIGTERM, "a second signal", 143, "terminated"),
], ids=["ctrl-c", "sigterm"])
def test_a_stop_during_truncate_says_the_previous_data_is_unchanged(database, tmp_path, signum, second, code, word):
    """The first Ctrl-C (or SIGTERM) says at once what it waits for (nothing was printed for the seconds
    of the server's rollback), then what is kept."""
    seed_in_process(database, *ARGS)
    before = checksums(database)
    proc = start_big_truncate(database, tmp_path)
    err = StderrLines(proc)
    proc.send_signal(signum)
    assert err.next(timeout=AT_ONCE) == STOPPING.format(second), err.all
    assert proc.wait(timeout=120) == code
    assert err.next(timeout=5) == f"retailflow-generator seed: {word}; the previous data is unchanged\n"
    assert err.next(timeout=5) == "" and proc.stdout.read() == ""
    assert checksums(database) == before
    assert tables(database) == ["customers", "order_items", "orders", "products"], "shadow tables dropped"
    assert list(tmp_path.iterdir()) == []


def keep_signalling(proc, signum) -> int:
    """Send ``signum`` every 5 ms until the process exits (a user pressing Ctrl-C again and again, or a
    supervisor repeating its SIGTERM); its exit status (negative: killed by that signal)."""
    deadline = time.monotonic() + 60
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the process never exited"
        proc.send_signal(signum)
        time.sleep(0.005)
    return proc.returncode


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signals_once_a_seed_has_finished_change_nothing(database, signum):
    """Once the seed has said what it wrote, signals are ignored through the process's exit. Python's
    exit puts a handler set from Python back to the signal's default action, and takes a tenth of a
    second or more here: a Ctrl-C in that window killed the finished seed, which exited 130 (-2)
    after printing its summary, so `make seed` reported an interrupt for a seed that was complete."""
    seed_in_process(database, *ARGS)
    before = checksums(database)
    proc = subprocess.Popen([GENERATOR, "seed", *ARGS[:-1], "13", "--truncate"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=mysql_env(database),
                            preexec_fn=as_foreground_job)
    summary = proc.stdout.readline()  # printed once the new tables are in
    assert summary.startswith("seed: wrote "), (summary, proc.stderr.read())
    assert keep_signalling(proc, signum) == 0
    assert proc.stderr.read() == ""
    assert checksums(database) != before, "the new data is in place"
    assert tables(database) == ["customers", "order_items", "orders", "products"]


def test_ctrl_c_after_an_interrupted_seed_has_said_what_is_kept_changes_nothing(database, tmp_path):
    """The same once an interrupted seed has said what the database holds: it exits 130 with that one
    line, however many more Ctrl-Cs come while the process exits."""
    seed_in_process(database, *ARGS)
    before = checksums(database)
    proc = start_big_truncate(database, tmp_path)
    err = StderrLines(proc)
    proc.send_signal(signal.SIGINT)
    assert err.next(timeout=AT_ONCE) == STOPPING.format("a second Ctrl-C"), err.all
    assert err.next(timeout=120) == "retailflow-generator seed: interrupted; the previous data is unchanged\n"
    assert keep_signalling(proc, signal.SIGINT) == 130
    assert err.next(timeout=5) == "", err.all
    assert checksums(database) == before


def test_a_second_ctrl_c_leaves_at_once_and_the_previous_data_stays(database, tmp_path):
    """A second Ctrl-C leaves at once: safe, as the previous tables change only by the one atomic RENAME
    TABLE, never sent now; the server rolls back on its own and the next seed drops the shadow tables.
    (It was ignored: the seed waited for the rollback.) Here the clean-up is held on purpose: this
    session reads orders__new in an open transaction, so the seed cannot drop it."""
    seed_in_process(database, *ARGS)
    before = checksums(database)
    proc = start_big_truncate(database, tmp_path)
    holder = connect(database)
    try:
        with holder.cursor() as cur:
            cur.execute("begin")
            cur.execute("select count(*) from orders__new")  # a metadata lock until commit
        err = StderrLines(proc)
        proc.send_signal(signal.SIGINT)
        assert err.next(timeout=AT_ONCE) == STOPPING.format("a second Ctrl-C"), err.all
        time.sleep(0.5)
        assert proc.poll() is None, "still cleaning up (held)"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=AT_ONCE) == 130, "left at once (the held clean-up would never end)"
        assert err.next(timeout=5) == (
            "retailflow-generator seed: interrupted; left at once: the previous data is unchanged (the server rolls"
            " the load back on its own; the next seed drops the <table>__new tables)\n")
        assert err.next(timeout=5) == ""
    finally:
        holder.commit()
        holder.close()
    assert checksums(database) == before
    seed_in_process(database, *ARGS[:-1], "12", "--truncate")  # drops the shadow tables left behind
    assert tables(database) == ["customers", "order_items", "orders", "products"]




@pytest.mark.parametrize("failure", ["generating", "loading"])
def test_a_failed_truncate_keeps_the_previous_data(database, monkeypatch, failure):
    seed_in_process(database, *ARGS)
    before = checksums(database)
    if failure == "generating":
        def failing_products(*_args, **_kwargs):
            raise GeneratorError("simulated failure while generating")
            yield  # a generator, like the real one

        monkeypatch.setattr(seed_module, "product_text", failing_products)
        expected = "simulated failure"
    else:
        real_load, calls = db_module.load_file, []

        def failing_load(conn, sql, path, expected_rows):
            calls.append(sql)
            if len(calls) == 3:
                raise pymysql.err.OperationalError(2013, "Lost connection to server during query (simulated)")
            return real_load(conn, sql, path, expected_rows)

        monkeypatch.setattr(db_module, "load_file", failing_load)
        expected = "the previous data is unchanged"
    monkeypatch.setattr(seed_module, "ORDER_CHUNK", 500)
    request = SeedRequest(customers=300, products=40, orders=3000, start=date(2025, 1, 1), end=date(2025, 3, 31),
                          seed=1, truncate=True)
    with pytest.raises(GeneratorError, match=expected):
        run_seed(request, MySQLTarget.from_url(database))
    assert checksums(database) == before
    assert tables(database) == ["customers", "order_items", "orders", "products"]
    assert scalar(database, "select count(*) from orders") == 3000


TINY = ["--customers", "60", "--products", "20", "--orders", "200", "--start", "2025-01-01",
        "--end", "2025-03-31"]


def test_ctrl_c_at_any_point_of_a_truncate_seed_exits_130_keeps_one_truth_and_no_shadow_tables(
        database, monkeypatch, capsys):
    """A Ctrl-C lands wherever the main thread is; in PyMySQL (pure Python) that can be between a
    packet's header and its body, after which the connection answers the rollback with a ValueError
    or an IndexError. Here the interrupt is raised after each of the seed's reads from the server in
    turn (every point one seed has), and each time: exit 130, one line, no shadow table left, and the
    line says what the tables hold."""
    from retailflow_generator import cli

    watcher = connect(database)  # one connection for every look (each new one costs a TLS setup)

    def checksums(_url):
        with watcher.cursor() as cur:
            cur.execute("checksum table " + ", ".join(TABLES))
            return {name.rpartition(".")[2]: value for name, value in cur.fetchall()}

    def tables(_url):
        with watcher.cursor() as cur:
            cur.execute("select table_name from information_schema.tables where table_schema = database()")
            return sorted(r[0] for r in cur.fetchall())

    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", database)  # the URL (and its password) is never an argument
    assert cli.main(["seed", *TINY, "--seed", "2"]) == 0
    new = checksums(database)
    assert cli.main(["seed", *TINY, "--seed", "1", "--truncate"]) == 0
    old = checksums(database)
    args = ["seed", *TINY, "--seed", "2", "--truncate"]
    fault = {"reads": 0, "at": 0}
    real_read, read_then_interrupt = interrupted_reads(fault)

    monkeypatch.setattr(pymysql.connections.Connection, "_read_bytes", read_then_interrupt)
    outcomes = set()
    for at in range(1, 500):
        before = checksums(database)
        fault.update(reads=0, at=at)
        capsys.readouterr()
        code = cli.main(args)
        out, err = capsys.readouterr()
        if fault["reads"] < at:  # the seed made fewer reads than that: every point was tried
            assert code == 0
            break
        assert code == 130, (at, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (at, err)
        assert tables(database) == ["customers", "order_items", "orders", "products"], at
        if "the previous data is unchanged" in err or "nothing was committed" in err:
            assert checksums(database) == before, (at, err)
        else:
            assert "the new data is in place" in err and checksums(database) == new, (at, err)
        outcomes.add(err.split("; ", 1)[1].split(" (")[0].strip())
        if checksums(database) == new:  # swapped: back to the old rows for the next point
            monkeypatch.setattr(pymysql.connections.Connection, "_read_bytes", real_read)
            assert cli.main(["seed", *TINY, "--seed", "1", "--truncate"]) == 0
            assert checksums(database) == old
            monkeypatch.setattr(pymysql.connections.Connection, "_read_bytes", read_then_interrupt)
    else:
        pytest.fail("the seed never ran to its end")
    assert outcomes >= {"the previous data is unchanged", "the new data is in place"}, outcomes


def test_ctrl_c_in_a_loop_always_exits_130_without_traceback_or_shadow_tables(database, tmp_path):
    """Real SIGINTs at points spread over a `seed --truncate` process's life (what `make seed` runs)."""
    seed_in_process(database, *ARGS)
    args = [GENERATOR, "seed", *BIG[:5], "40000", *BIG[6:]]
    interrupted = []
    for delay in (0.0, 0.5, 0.9, 1.3, 1.7):  # seconds after the seed's first session on the database
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=mysql_env(database), preexec_fn=as_foreground_job)
        # counted from its work, not its start: the interpreter's start-up takes longer beside other suites,
        # and a Ctrl-C before the command line has its handler is Python's own traceback
        deadline = time.monotonic() + 60
        while proc.poll() is None and not scalar(database, "select count(*) from information_schema.processlist"
                                                            " where db = database() and id <> connection_id()"):
            assert time.monotonic() < deadline, "the seed never connected"
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:  # it had finished: its summary says so
            assert out.startswith("seed: wrote ") and err == "", (delay, err)
        else:
            assert proc.returncode == 130 and "Traceback" not in err, (delay, proc.returncode, err)
            assert err.strip().splitlines()[-1].startswith("retailflow-generator seed: interrupted; ")
            interrupted.append(delay)
        assert tables(database) == ["customers", "order_items", "orders", "products"], delay
    # a seed that always finished before its Ctrl-C would leave the interrupted path above unchecked
    assert interrupted, "every seed had finished before its Ctrl-C: none was interrupted"


def test_ctrl_c_as_a_plain_seed_commits_says_whether_it_committed(database, monkeypatch, capsys):
    """A Ctrl-C once the COMMIT is sent (a plain seed: one transaction) said "nothing was committed"
    although the rows were in. Now the seed asks the server. Here the interrupt is raised after each of
    the last reads of a seed from the server in turn (the COMMIT's answer among them)."""
    from retailflow_generator import cli

    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", database)
    fault = {"reads": 0, "at": 0}
    real_read, read_then_interrupt = interrupted_reads(fault)

    monkeypatch.setattr(pymysql.connections.Connection, "_read_bytes", read_then_interrupt)
    assert cli.main(["seed", *TINY]) == 0
    reads, full = fault["reads"], {t: scalar(database, f"select count(*) from {t}") for t in TABLES}
    outcomes = set()
    for at in range(reads - 8, reads + 1):
        conn = connect(database)  # an empty database again
        with conn.cursor() as cur:
            cur.execute("drop table if exists " + ", ".join(reversed(TABLES)))
        conn.close()
        fault.update(reads=0, at=at)
        capsys.readouterr()
        code = cli.main(["seed", *TINY])
        _out, err = capsys.readouterr()
        assert code == 130 and err.count("\n") == 1 and "Traceback" not in err, (at, err)
        now = {t: scalar(database, f"select count(*) from {t}") for t in TABLES}
        if err.endswith("interrupted; nothing was committed\n"):
            assert set(now.values()) == {0}, (at, err, now)
        else:
            assert err.endswith("interrupted; the seed had just committed: the new rows are in\n"), (at, err)
            assert now == full, (at, now)
        outcomes.add(err.split("; ", 1)[1].strip())
    assert len(outcomes) == 2, outcomes


@pytest.mark.parametrize("lost", ["loading", "plain commit", "swap"])
def test_a_signal_whose_interrupt_was_lost_still_stops_the_seed_truthfully(database, monkeypatch, lost):
    """A KeyboardInterrupt raised by the signal handler can be lost (seen: during numpy's lazy import of
    numpy.random, about 1 run in 60 of the Ctrl-C loop above): the seed then ran to its end and exited 0
    after printing "stopping". It now checks at each step that no signal came. Here the handler's
    record is set at a chosen step, with its exception lost."""
    stop = seed_module.StopSignals()  # not installed: the handler is simulated
    request = SeedRequest(customers=60, products=20, orders=200, start=date(2025, 1, 1), end=date(2025, 3, 31),
                          seed=1, truncate=lost == "swap")
    if lost == "swap":
        seed_in_process(database, *TINY)
        real_swap = seed_module.swap_in_shadow_tables

        def swap_then_signal(conn):
            swapped = real_swap(conn)
            stop.signum = signal.SIGINT
            return swapped

        monkeypatch.setattr(seed_module, "swap_in_shadow_tables", swap_then_signal)
    elif lost == "plain commit":
        real_commit = pymysql.connections.Connection.commit

        def commit_then_signal(conn):
            real_commit(conn)
            if stop.stage == "commit":  # the load's COMMIT (not the schema's)
                stop.signum = signal.SIGINT

        monkeypatch.setattr(pymysql.connections.Connection, "commit", commit_then_signal)
    else:
        stop.signum = signal.SIGINT
    with pytest.raises(seed_module.SeedInterrupted) as interrupted:
        run_seed(request, MySQLTarget.from_url(database), stop=stop)
    kept = str(interrupted.value)
    orders = scalar(database, "select count(*) from orders")
    if lost == "loading":
        assert kept == "nothing was committed" and orders == 0
    elif lost == "plain commit":
        assert kept == "the seed had just committed: the new rows are in" and orders == 200
    else:
        assert kept.startswith("the new data is in place") and orders == 200
    assert tables(database) == ["customers", "order_items", "orders", "products"]
