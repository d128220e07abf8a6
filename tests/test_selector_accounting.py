"""Black-box accounting of the selector: every patch that arrives is accepted or quarantined,
every accepted patch is pooled, selected or evicted, after re-sends and restarts:

    ingested = accepted + quarantined,   accepted = pooled + selected + evicted
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mummi_ml.config import load_config
from mummi_ml.patch import PatchBatch, write_patches
from mummi_ml.selector import QUARANTINE_CODES, SelectorService, read_status
from mummi_ml.selector.checkpoint import latest_checkpoint


def make_batch(start: int, n: int, level: float = 0.0, seed: int = 0) -> PatchBatch:
    """Patches with ids ``start..start+n-1``: uniform concentrations in [level, level + 1)."""
    rng = np.random.default_rng(seed + start)
    x = (level + rng.random((n, 37, 37, 14), dtype=np.float32)).astype(np.float32)
    y = np.zeros((n, 2), np.int32)
    y[:, 0] = rng.integers(0, 3, n)
    return PatchBatch.from_arrays(x, y, ids=np.arange(start, start + n, dtype=np.uint64))


def make_config(tmp_path: Path, slots: int = 5, **sel):
    over = {
        "selector.state_dir": str(tmp_path / "state"),
        "selector.spool_dir": str(tmp_path / "spool"),
        "selector.embedding": "mean_concentrations",
        "selector.poll_interval_s": 0.05,
        "jobs.slots": slots,
        "jobs.command": '["{python}", "-c", "pass"]',
        "jobs.poll_interval_s": 0.05,
        **{f"selector.{k}": v for k, v in sel.items()},
    }
    return load_config(None, [f"{k}={v}" for k, v in over.items()])


def assert_balanced(status: dict) -> None:
    assert status["ingested"] == status["accepted"] + status["quarantined"]
    assert status["accepted"] == status["pooled"] + status["selected"] + status["evicted"]


def quarantine_log(tmp_path: Path) -> dict[int, dict]:
    path = tmp_path / "state" / "quarantine-rank-00000.jsonl"
    if not path.exists():
        return {}
    return {e["id"]: e for e in map(json.loads, path.read_text().splitlines())}


def test_resent_copies_of_selected_patches_are_quarantined_as_duplicates(tmp_path):
    """100 patches, 5 picks, the same 100 patches re-spooled: all 100 copies are duplicates,
    the 5 of selected patches among them too (they used to vanish from the books)."""
    (tmp_path / "spool").mkdir()
    write_patches(tmp_path / "spool" / "first.h5", make_batch(0, 100))
    assert SelectorService(make_config(tmp_path)).run(once=True) == 0
    first = read_status(tmp_path / "state")
    assert first["selected"] == 5 and first["ingested"] == 100
    write_patches(tmp_path / "spool" / "again.h5", make_batch(0, 100))
    assert SelectorService(make_config(tmp_path)).run(once=True) == 0
    status = read_status(tmp_path / "state")
    assert status["ingested"] == 200 and status["accepted"] == 100
    assert status["quarantined"] == 100 and status["replayed"] == 0
    assert_balanced(status)
    log = quarantine_log(tmp_path)
    assert set(log) == set(range(100))
    assert all(e["code"] == 2 and QUARANTINE_CODES[2] == "duplicate id" for e in log.values())
    picks = [json.loads(line)
             for line in (tmp_path / "state" / "picks.jsonl").read_text().splitlines()]
    picked_first = [p["id"] for p in picks[:5]]
    assert all("already selected" in log[i]["reason"] for i in picked_first)
    assert sum("already selected" in e["reason"] for e in log.values()) == 5


def test_replayed_counter_is_checkpointed_and_reported(tmp_path):
    (tmp_path / "spool").mkdir()
    write_patches(tmp_path / "spool" / "a.h5", make_batch(0, 20))
    assert SelectorService(make_config(tmp_path)).run(once=True) == 0
    _, man = latest_checkpoint(tmp_path / "state")
    assert man["counters"]["replayed"] == 0
    assert read_status(tmp_path / "state")["replayed"] == 0


def _crash_after_picks(tmp_path: Path, k: int) -> list[int]:
    """Checkpoint A (ids 0-49), ingest B (ids 100-149, far from A), pick k, crash (no
    checkpoint after the picks). Returns the picked ids."""
    spool = tmp_path / "spool"
    spool.mkdir()
    write_patches(spool / "a.h5", make_batch(0, 50))
    svc = SelectorService(make_config(tmp_path))
    svc.step(once=True)
    svc.checkpoint()
    write_patches(spool / "b.h5", make_batch(100, 50, level=2.0))
    svc.step(once=True)
    assert svc.select(k) == k
    picked = [int(i) for i in svc.selected.ids]
    svc.emitter.close()
    del svc  # the crash: the picks are in the picks log, not in a checkpoint
    return picked


def test_picks_replayed_after_a_crash_are_not_duplicates_and_the_books_balance(tmp_path):
    picked = _crash_after_picks(tmp_path, k=4)
    assert picked[0] < 50 and all(100 <= i < 150 for i in picked[1:])  # 3 picks need replay
    assert SelectorService(make_config(tmp_path)).run(once=True) == 0
    status = read_status(tmp_path / "state")
    assert status["quarantined"] == 0, quarantine_log(tmp_path)
    assert status["replayed"] == 3
    assert status["ingested"] == 100 and status["accepted"] == 100
    assert_balanced(status)


def test_a_checkpoint_between_replay_and_reread_keeps_the_awaited_copies(tmp_path):
    """Restart, checkpoint before the replayed picks' file is re-read, crash again, restart:
    the copies are still recognised as replays (the awaited flags are in the checkpoint)."""
    _crash_after_picks(tmp_path, k=4)
    svc = SelectorService(make_config(tmp_path))
    assert int(svc.selected.awaiting_copy.sum()) == 3
    svc.checkpoint()
    svc.emitter.close()
    del svc
    assert SelectorService(make_config(tmp_path)).run(once=True) == 0
    status = read_status(tmp_path / "state")
    assert status["quarantined"] == 0 and status["replayed"] == 3
    assert status["ingested"] == 100
    assert_balanced(status)


def test_a_resent_copy_after_the_replay_is_a_duplicate(tmp_path):
    picked = _crash_after_picks(tmp_path, k=4)
    assert SelectorService(make_config(tmp_path)).run(once=True) == 0
    write_patches(tmp_path / "spool" / "resend.h5", make_batch(100, 50, level=2.0))
    assert SelectorService(make_config(tmp_path)).run(once=True) == 0
    status = read_status(tmp_path / "state")
    assert status["quarantined"] == 50 and status["replayed"] == 3
    assert status["ingested"] == 150
    assert_balanced(status)
    log = quarantine_log(tmp_path)
    assert all("already selected" in log[i]["reason"] for i in picked[1:])
