"""A stream's batches between the MySQL reader and the COPY: a first-in, first-out queue that keeps a
few batches in memory and the rest in an unnamed temporary file, and the thread that fills it.

Why it exists: connectorx's ``arrow_stream`` decodes a query's rows in a Rust thread of its own and
sends each batch into an unbounded channel (``std::sync::mpsc::channel`` in its ``arrowstream``
destination, ``connectorx/src/destinations/arrowstream/mod.rs``, sfu-db/connector-x@6ec2229) that
never waits for the reader. Whatever the COPY into PostgreSQL has not taken yet
piles up there, in memory: the part of a table read faster than it is written, and the whole of a
table whose stream waits for its turn (``parallel``). That made a full load's peak memory grow with
the data. The drain below takes the batches out of connectorx as they come; past ``memory_batches``
they go to disk, and are read back in order when the COPY gets to them. The file is emptied each
time the COPY catches up, so it holds the backlog only, and it has no name: nothing is left behind,
even after a crash.

Reading from connectorx holds the GIL while it waits for its decoder (its ``__next__`` blocks on the
channel without releasing it), which would stall the COPY's thread. So the drain reads only batches
that should be ready by the decoder's measured pace, and waits for one (which may block) only when
the COPY has nothing left in memory or about once a second, to measure the pace again. The pace is
measured from the time each read spent on connectorx's channel (``source.ArrowStream.waited``), not
from the whole read: a read that found its batch ready but then waited for the GIL looked like a
wait for the decoder, and the pace measured there was the drain's own, however far the decoder was
ahead; the channel then filled for as long as the table lasted.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import deque

import pyarrow as pa

#: a read that took longer than this waited for connectorx's decoder: the channel was empty
WAITED = 0.002
#: the drain checks the decoder's pace at least this often (one read that may wait)
MEASURE_EVERY = 1.0
#: the fewest batches between two measures for their interval alone to give the pace
MEASURE_BATCHES = 4
#: how long the drain sleeps between two rounds of reads that should not wait
PACE = 0.02


class Spool:
    """First in, first out; ``put`` from one thread (never waits), ``get`` from another (waits for a
    batch). At most ``memory_batches`` batches are held in memory; the others wait in a temporary
    file (in ``spill_dir``, default the system's temporary folder)."""

    def __init__(self, memory_batches: int = 2, spill_dir: str | None = None):
        if memory_batches < 1:
            raise ValueError("memory_batches must be at least 1")
        self.memory_batches = memory_batches
        self.spill_dir = spill_dir
        self._cond = threading.Condition()
        self._memory: deque[pa.RecordBatch] = deque()
        self._spilled: deque[tuple[int, int]] = deque()  # (offset, length) of batches not read yet
        self._file = None
        self._end = 0
        self._schema: pa.Schema | None = None
        self._done = False
        self._error: BaseException | None = None
        self._closed = False
        self._read_to_end = False  # set by close(): every batch had been taken
        #: batches written to the file so far, and the most it held at once (bytes)
        self.spilled = 0
        self.peak_spill_bytes = 0
        #: the most batches held in memory at once
        self.peak_in_memory = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def in_memory(self) -> int:
        with self._cond:
            return len(self._memory)

    def hungry(self) -> bool:
        """The consumer has nothing left to take (or is about to): the next batch is wanted now."""
        with self._cond:
            return not self._memory and not self._spilled

    def put(self, batch: pa.RecordBatch) -> None:
        with self._cond:
            if self._closed:
                return
            if self._schema is None:
                self._schema = batch.schema
            if not self._spilled and len(self._memory) < self.memory_batches:
                self._memory.append(batch)
                self.peak_in_memory = max(self.peak_in_memory, len(self._memory))
            else:
                if self._file is None:
                    self._file = tempfile.TemporaryFile(prefix="retailflow-spool-", dir=self.spill_dir)
                data = batch.serialize()
                os.pwrite(self._file.fileno(), data, self._end)
                self._spilled.append((self._end, data.size))
                self._end += data.size
                self.spilled += 1
                self.peak_spill_bytes = max(self.peak_spill_bytes, self._end)
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        """No more batches; ``error``: the reader failed, raised by ``get`` after the batches before it."""
        with self._cond:
            self._done, self._error = True, error
            self._cond.notify_all()

    def get(self) -> pa.RecordBatch | None:
        """The oldest batch, waiting for one; None at the end. Raises when the spool was closed before
        the stream ended: a reader that stops early must not look like a table read to its end."""
        with self._cond:
            while True:
                if self._closed:
                    if self._read_to_end:
                        return None
                    raise RuntimeError("the stream's spool was closed before the stream ended")
                if self._memory:
                    return self._memory.popleft()
                if self._spilled:
                    offset, length = self._spilled.popleft()
                    data = os.pread(self._file.fileno(), length, offset)
                    if not self._spilled:  # caught up: the file is emptied, its disk space freed
                        self._end = 0
                        os.ftruncate(self._file.fileno(), 0)
                    return pa.ipc.read_record_batch(pa.py_buffer(data), self._schema)
                if self._done:
                    if self._error is not None:
                        error, self._error = self._error, None
                        raise error
                    return None
                self._cond.wait()

    def close(self) -> None:
        with self._cond:
            if not self._closed:
                self._read_to_end = self._done and self._error is None and not self._memory and not self._spilled
            self._closed = True
            self._memory.clear()
            self._spilled.clear()
            if self._file is not None:
                self._file.close()
                self._file = None
            self._cond.notify_all()


def drain(reader, spool: Spool, started: float) -> None:
    """Move every batch of ``reader`` (a connectorx stream whose first batch arrived at ``started``)
    into ``spool``, then close the reader. Runs in a thread of its own until the end of the stream or
    ``spool.close()``.

    Reads are paced so that they do not wait for the decoder (see the module's docstring): the pace is
    measured at reads that did wait, when connectorx's channel was empty (by the reader's ``waited``,
    the seconds its last read spent on the channel); between two such moments the drain takes as many
    batches as the decoder should have made since, minus one."""
    count = 0
    anchor_at, anchor_count, per_second = None, 0, 0.0
    try:
        while not spool.closed:
            now = time.monotonic()
            if anchor_at is not None and not spool.hungry() and now - anchor_at < MEASURE_EVERY:
                ready = int(per_second * (now - anchor_at)) - (count - anchor_count) - 1
                if ready < 1:
                    time.sleep(PACE)
                    continue
            else:
                ready = 1
            for _ in range(ready):
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    spool.finish()
                    return
                # the reader's own measure of its wait (``source.ArrowStream``), not the whole call's:
                # that also counts the time spent taking the GIL back, which under load often passes
                # WAITED while batches are queued, and the pace, measured at such a moment, then stays
                # as low as the drain's own rate while connectorx's channel fills
                waited = reader.waited
                count += 1
                if batch.num_rows:
                    spool.put(batch)
                batch = None  # an error kept for the consumer holds this frame: not the batch with it
                if waited > WAITED:  # the channel was empty: a moment to measure the decoder's pace at
                    at = time.monotonic()
                    # the channel is empty here as at every such moment: the decoder has made ``count``
                    # batches since ``started``. The pace of the interval since the last such moment
                    # follows the decoder's changes, but over a batch or two it is mostly noise (a
                    # pace taken too low lets the channel fill until the next measure): below
                    # MEASURE_BATCHES, the whole stream's pace
                    if anchor_at is not None and count - anchor_count >= MEASURE_BATCHES:
                        per_second = (count - anchor_count) / (at - anchor_at)
                    else:
                        per_second = count / max(at - started, 1e-6)
                    anchor_at, anchor_count = at, count
                    break
    except BaseException as exc:  # handed to the consumer, which raises it in order
        spool.finish(exc)
    finally:
        try:
            reader.close()
        except Exception:  # closing is best effort: the connection ends with the process anyway
            pass
