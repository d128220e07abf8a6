"""One contract every patch source of the selector fulfils, run over the spool and MPI.

Each source is fed by its real producer: the continuum coupler's :class:`SpoolSink` writing
files into a spool directory, and the coupler's wire protocol (:func:`send_batch`,
:func:`send_end`) sending over a real MPI communicator of this process (``COMM_SELF``
duplicated; the producer runs in its own thread, as the blocking sends of a coupler rank would).
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mummi_ml.continuum.coupler import SpoolSink
from mummi_ml.patch import PatchBatch
from mummi_ml.patch.constants import PATCH_SHAPE
from mummi_ml.patch.stream import (
    META_DTYPE,
    TAG_HEADER,
    MPMDLayout,
    send_batch,
    send_end,
    spool_name,
)
from mummi_ml.selector.counters import Counters
from mummi_ml.selector.mpi_source import MpiSource
from mummi_ml.selector.source import Arrival, PatchSource
from mummi_ml.selector.spool import SpoolSource

pytestmark = pytest.mark.timeout(120)


def make_batch(start: int, n: int = 6) -> PatchBatch:
    rng = np.random.default_rng(start)
    x = rng.random((n, *PATCH_SHAPE), dtype=np.float32)
    y = np.stack([rng.integers(0, 3, n), np.zeros(n, int)], 1).astype(np.int32)
    return PatchBatch.from_arrays(x, y, ids=np.arange(start, start + n, dtype=np.uint64))


class SpoolProducer:
    """The coupler's spool sink; ``done`` is a no-op (a spool has no end of stream)."""

    durable = True

    def __init__(self, tmp_path: Path):
        self.dir = tmp_path / "spool"
        self.sink = SpoolSink(self.dir)
        self.seq = 0

    def source(self) -> SpoolSource:
        return SpoolSource(self.dir, files_per_poll=8)

    def send(self, batch: PatchBatch) -> None:
        self.sink(batch, self.seq)
        self.seq += 1

    def send_garbage(self) -> None:
        (self.dir / spool_name(0, self.seq)).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
        self.seq += 1

    def done(self) -> None:
        self.sink.close()

    def close(self) -> None:
        pass


class MpiProducer:
    """The coupler's wire protocol over a real communicator, sending from its own thread (in
    order; each blocking send returns once the source has received it)."""

    durable = False

    def __init__(self, tmp_path: Path):
        mpi = pytest.importorskip("mpi4py.MPI")
        if mpi.Query_thread() < mpi.THREAD_MULTIPLE:
            pytest.skip("the MPI library does not support threads (MPI_THREAD_MULTIPLE)")
        self.world = mpi.COMM_SELF.Dup()
        self.layout = MPMDLayout(role="selector", world=self.world, local=mpi.COMM_SELF,
                                 coupler_ranks=(0,), selector_ranks=(0,))
        self.jobs: queue.Queue = queue.Queue()
        self.seq = 0
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            job()

    def source(self) -> MpiSource:
        return MpiSource(self.layout)

    def send(self, batch: PatchBatch) -> None:
        seq, self.seq = self.seq, self.seq + 1
        self.jobs.put(lambda: send_batch(self.world, 0, batch, batch_seq=seq))

    def send_garbage(self) -> None:
        """A header of another protocol version (nothing follows it)."""
        header = np.array([3, 99, *PATCH_SHAPE, 0, 0, META_DTYPE.itemsize], np.int64)
        self.jobs.put(lambda: self.world.Send(header, dest=0, tag=TAG_HEADER))

    def done(self) -> None:
        self.jobs.put(lambda: send_end(self.world, 0))

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "a send was never received"
        self.world.Free()


@pytest.fixture(params=["spool", "mpi"])
def producer(request, tmp_path):
    p = {"spool": SpoolProducer, "mpi": MpiProducer}[request.param](tmp_path)
    yield p
    if request.param == "mpi":  # drain what a failed test left, so the thread can end
        p.done()
        src = p.source()
        end = time.monotonic() + 10
        while src.is_open() and time.monotonic() < end:
            src.poll()
    p.close()


def drain(src: PatchSource, n: int, timeout_s: float = 20) -> tuple[list[Arrival], Counters]:
    """Poll until ``n`` batches came (or the time is up); then poll once more."""
    got: list[Arrival] = []
    counts = Counters()
    end = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < end:
        p = src.poll()
        got += p.arrivals
        counts.add(p.counts)
        time.sleep(0.01)
    p = src.poll()
    got += p.arrivals
    counts.add(p.counts)
    return got, counts


def assert_same(a: PatchBatch, b: PatchBatch) -> None:
    assert a.ids.tolist() == b.ids.tolist()
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)


def test_a_source_is_a_patch_source(producer):
    assert isinstance(producer.source(), PatchSource)


def test_batches_come_out_once_as_they_went_in_and_in_order(producer):
    src = producer.source()
    sent = [make_batch(0), make_batch(100), make_batch(200, n=1)]
    for b in sent:
        producer.send(b)
    got, counts = drain(src, len(sent))
    assert len(got) == len(sent)
    for a, b in zip(got, sent, strict=True):
        assert_same(a.batch, b)
        assert a.origin
    assert counts == Counters()
    assert src.poll().arrivals == []


def test_poll_returns_at_once_when_nothing_waits(producer):
    src = producer.source()
    t0 = time.monotonic()
    p = src.poll()
    assert time.monotonic() - t0 < 1.0
    assert p.arrivals == [] and p.counts == Counters()


def test_an_unreadable_input_is_refused_counted_once_and_the_rest_read(producer):
    src = producer.source()
    producer.send(make_batch(0))
    producer.send_garbage()
    producer.send(make_batch(100))
    got, counts = drain(src, 2)
    assert [a.batch.ids[0] for a in got] == [0, 100]
    assert counts.quarantined_files + counts.bad_messages == 1
    assert counts.ingested == counts.accepted == counts.quarantined == 0


def test_the_source_is_open_until_the_producer_is_done_and_all_is_read(producer):
    src = producer.source()
    producer.send(make_batch(0))
    assert src.is_open()
    producer.done()
    got, _ = drain(src, 1)
    assert len(got) == 1
    end = time.monotonic() + 10
    while src.is_open() and time.monotonic() < end:
        src.poll()
    assert not src.is_open()


def test_a_restart_reads_again_what_no_checkpoint_covered_if_the_source_is_durable(producer):
    producer.send(make_batch(0))
    got, _ = drain(producer.source(), 1)
    assert len(got) == 1
    again = producer.source()
    again.recover([])
    got2, _ = drain(again, 1, timeout_s=2 if not producer.durable else 20)
    if producer.durable:
        assert len(got2) == 1 and got2[0].key == got[0].key
        assert_same(got2[0].batch, got[0].batch)
    else:
        assert got2 == [] and got[0].key is None


def test_an_input_a_checkpoint_covered_is_never_read_again(producer):
    producer.send(make_batch(0))
    src = producer.source()
    got, _ = drain(src, 1)
    keys = [a.key for a in got if a.key is not None]
    again = producer.source()
    again.recover(keys)  # a restart from the checkpoint that covered them
    assert drain(again, 1, timeout_s=1)[0] == []
    src.retire(keys)
    assert drain(producer.source(), 1, timeout_s=1)[0] == []
