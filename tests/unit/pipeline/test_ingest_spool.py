"""The reader side of a stream keeps a bounded number of batches in memory, however far ahead of the
COPY connectorx decodes: the rest waits on disk, and every row still comes out once, in order."""

from __future__ import annotations

import queue
import tempfile
import threading
import time

import pyarrow as pa
import pytest

from retailflow_ingest.errors import IngestError
from retailflow_ingest.source import ColumnType, Stream, StreamReader
from retailflow_ingest.spool import Spool

STREAM = Stream("order_items", "order_item_id", (ColumnType("order_item_id", "bigint", pa.int64()),
                                                 ColumnType("sku", "varchar", pa.string())))
ROWS = 2_000
END, FAILED = object(), object()
#: pools that count what is allocated through them; they outlive every array made from them
PROBE = pa.proxy_memory_pool(pa.default_memory_pool())
COUNTED = pa.proxy_memory_pool(pa.default_memory_pool())


class DecodingAhead:
    """Stand-in for connectorx's ``arrow_stream`` reader: a thread decodes every batch of the result
    as fast as it can into an unbounded queue (connectorx's ``mpsc::channel``), whether or not anyone
    reads; ``read_next_batch`` takes the oldest. Its batches are allocated from ``pool``, so the
    bytes still held anywhere (its queue, the spool, the consumer) can be counted. Written from
    connectorx's ``connectorx/src/destinations/arrowstream/mod.rs`` (sfu-db/connector-x@6ec2229,
    0.4.6-alpha.1; the project pins 0.4.6): the destination creates ``std::sync::mpsc::channel()``,
    unbounded, and its partition writers send each finished batch into it without waiting."""

    def __init__(self, batches: int, pool: pa.MemoryPool, fail_after: int | None = None, every: float = 0.0,
                 gil: float = 0.0, start: float = 0.0):
        self.pool, self.total, self.fail_after = pool, batches, fail_after
        #: seconds before the first batch (the query's start), the decoder's seconds per batch, the
        #: seconds each read spends beyond the channel (``gil``: what taking the GIL back costs a real
        #: read under load), and how long the last read waited on the channel (``ArrowStream.waited``)
        self.start, self.every, self.gil, self.waited = start, every, gil, 0.0
        self.queue: queue.Queue = queue.Queue()
        #: the most batches that waited in the channel at once
        self.peak_queued = 0
        self.decoded = threading.Event()
        self.closed = False
        threading.Thread(target=self._decode, daemon=True).start()

    @staticmethod
    def batch(i: int, pool: pa.MemoryPool) -> pa.RecordBatch:
        ids = pa.array(range(i * ROWS, (i + 1) * ROWS), pa.int64(), memory_pool=pool)
        skus = pa.array([f"sku-{n:08d}" for n in range(i * ROWS, (i + 1) * ROWS)], pa.string(), memory_pool=pool)
        return pa.RecordBatch.from_arrays([ids, skus], names=["order_item_id", "sku"])

    def _decode(self) -> None:
        time.sleep(self.start)
        if self.total == 0:  # connectorx ends a result without rows with one empty batch
            self.queue.put(self.batch(0, self.pool).slice(0, 0))
        for i in range(self.total):
            if self.fail_after is not None and i == self.fail_after:
                self.queue.put(FAILED)
                break
            if self.every:
                time.sleep(self.every)
            self.queue.put(self.batch(i, self.pool))
            self.peak_queued = max(self.peak_queued, self.queue.qsize())
        self.queue.put(END)
        self.decoded.set()

    def read_next_batch(self) -> pa.RecordBatch:
        began = time.monotonic()
        item = self.queue.get()
        self.waited = time.monotonic() - began
        if self.gil:
            time.sleep(self.gil)
        if item is END:
            raise StopIteration
        if item is FAILED:
            raise RuntimeError("connection lost")
        return item

    def close(self) -> None:
        self.closed = True


def test_a_stream_decoded_far_ahead_holds_a_few_batches_in_memory_and_the_rest_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the spool's file goes
    one = DecodingAhead.batch(0, PROBE)
    one_batch = PROBE.bytes_allocated()  # what one batch takes in its pool
    del one
    source = DecodingAhead(60, COUNTED)
    reader = StreamReader(STREAM, source, "a stand-in")  # two batches in memory by default
    reader.wait_started()
    # the stream waits for its turn while the whole result is decoded ahead of it
    assert source.decoded.wait(30)
    deadline = time.monotonic() + 30
    while not source.queue.empty() and time.monotonic() < deadline:  # a drain takes them out
        time.sleep(0.01)
    held = COUNTED.bytes_allocated()
    assert held < 2.5 * one_batch, f"{held / one_batch:.1f} batches held in memory, 2 expected"
    assert reader.spool.spilled >= 55
    rows = pa.concat_tables(list(reader.batches()))
    assert rows.column("order_item_id").to_pylist() == list(range(60 * ROWS))
    assert rows.column("sku")[12_345].as_py() == "sku-00012345"
    assert rows.schema == STREAM.arrow_schema
    reader.close()
    assert source.closed


def test_reads_slowed_by_other_threads_still_keep_connectorx_channel_short(tmp_path):
    """Under load each read also waits to take the GIL back, longer than a read that found its batch
    ready should take. Paced by that, the drain took the decoder for slower than it was, read at its
    own pace, and left connectorx's channel to fill for as long as the table lasted (the full load's
    peak memory grew with the data); counted from before the query's start, its first pace was as
    far off. Paced by the channel's own wait from the first batch on, the backlog stays a few
    batches, and the rest goes to disk."""
    source = DecodingAhead(150, pa.default_memory_pool(), every=0.02, gil=0.004, start=0.3)
    reader = StreamReader(STREAM, source, "a stand-in", spill_dir=str(tmp_path))
    reader.wait_started()
    assert source.decoded.wait(30)
    # a few batches, or a few more when this machine stalls the drain's thread; not the table
    assert source.peak_queued <= 30, f"{source.peak_queued} of 150 batches waited in connectorx's channel at once"
    assert sum(c.num_rows for c in reader.batches()) == 150 * ROWS
    reader.close()


def test_the_spool_is_first_in_first_out_across_memory_and_disk_and_empties_its_file(tmp_path):
    spool = Spool(memory_batches=2, spill_dir=str(tmp_path))
    batch = lambda i: pa.record_batch({"n": pa.array([i] * 10, pa.int64())})  # noqa: E731
    for i in range(5):
        spool.put(batch(i))
    assert (spool.in_memory(), spool.spilled) == (2, 3)
    taken = [spool.get().column("n")[0].as_py() for _ in range(3)]
    for i in range(5, 7):  # older batches wait on disk: these queue behind them, not in memory
        spool.put(batch(i))
    assert spool.in_memory() == 0
    taken += [spool.get().column("n")[0].as_py() for _ in range(4)]
    assert taken == list(range(7))
    assert spool._end == 0  # caught up: the file was emptied
    spool.put(batch(7))
    assert spool.in_memory() == 1
    spool.finish()
    assert spool.get().column("n")[0].as_py() == 7
    assert spool.get() is None
    spool.close()


def test_a_read_error_is_raised_after_the_batches_read_before_it(tmp_path):
    source = DecodingAhead(10, pa.default_memory_pool(), fail_after=4)
    reader = StreamReader(STREAM, source, "a stand-in", spill_dir=str(tmp_path))
    reader.wait_started()
    got = []
    with pytest.raises(IngestError, match="reading order_items from a stand-in failed: connection lost"):
        for chunk in reader.batches():
            got.append(chunk.num_rows)
    assert got == [ROWS] * 4
    reader.close()


def test_closing_a_reader_stops_its_drain_and_closes_the_query(tmp_path):
    source = DecodingAhead(30, pa.default_memory_pool())
    reader = StreamReader(STREAM, source, "a stand-in", spill_dir=str(tmp_path))
    reader.wait_started()
    reader.close()
    reader._drain.join(10)
    assert not reader._drain.is_alive()
    assert source.closed
    # what was not read is gone: reading on must fail, not end as if the table had been read whole
    with pytest.raises(RuntimeError, match="closed before the stream ended"):
        list(reader.batches())


def test_a_reader_closed_after_its_last_batch_ends_cleanly(tmp_path):
    source = DecodingAhead(3, pa.default_memory_pool())
    reader = StreamReader(STREAM, source, "a stand-in", spill_dir=str(tmp_path))
    reader.wait_started()
    assert sum(c.num_rows for c in reader.batches()) == 3 * ROWS  # the source's 3 batches, whole
    reader.close()
    assert list(reader.batches()) == []


def test_a_query_without_rows_still_yields_its_one_empty_chunk(tmp_path):
    """connectorx ends a query without rows with one empty batch; the stream passes it on as before
    (the lake writes its file, the COPY its header), rather than yielding nothing."""
    source = DecodingAhead(0, pa.default_memory_pool())
    reader = StreamReader(STREAM, source, "a stand-in", spill_dir=str(tmp_path))
    reader.wait_started()
    chunks = list(reader.batches())
    assert [c.num_rows for c in chunks] == [0]
    assert chunks[0].schema == STREAM.arrow_schema
    reader.close()
