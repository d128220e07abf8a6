"""The selector service end to end: spool ingest with malformed input, quarantine, eviction,
emission through the real job emitter (local backend), checkpoints, restart, status."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mummi_ml.config import load_config
from mummi_ml.patch import PatchBatch, mean_concentrations, write_patches
from mummi_ml.selector import (
    QUARANTINE_CODES,
    SelectorService,
    latest_checkpoint,
    load_rank_state,
    load_selected,
    read_status,
    reference_select,
)


def make_batch(rng, start: int, n: int) -> PatchBatch:
    x = rng.random((n, 37, 37, 14), dtype=np.float32)
    y = np.zeros((n, 2), np.int32)
    y[:, 0] = rng.integers(0, 3, n)
    y[:, 1] = np.minimum(y[:, 0], rng.integers(0, 2, n))
    return PatchBatch.from_arrays(x, y, ids=np.arange(start, start + n, dtype=np.uint64))


def make_config(tmp_path: Path, **sel):
    over = {
        "selector.state_dir": str(tmp_path / "state"),
        "selector.spool_dir": str(tmp_path / "spool"),
        "selector.embedding": "mean_concentrations",
        "selector.poll_interval_s": 0.05,
        "jobs.slots": 3,
        "jobs.command": '["{python}", "-c", "pass"]',
        "jobs.poll_interval_s": 0.1,
        **{f"selector.{k}": v for k, v in sel.items()},
    }
    return load_config(None, [f"{k}={v}" for k, v in over.items()])


def accounting(state_dir: Path) -> dict[str, set[int]]:
    """Ids pooled, selected, evicted and quarantined in the newest checkpoint."""
    ckpt, man = latest_checkpoint(state_dir)
    st = load_rank_state(ckpt, man, 0, 1)
    sel, _ = load_selected(ckpt)
    return {"pooled": set(st.pool["ids"].tolist()), "selected": set(sel["ids"].tolist()),
            "evicted": set(st.evicted_ids.tolist()),
            "quarantined": set(st.quarantined_ids.tolist())}


@pytest.fixture
def spool(tmp_path, rng):
    """Three good files (ids 0-299), one repeating ids 250-269, one with a NaN patch (id 300)
    and a bad label (id 301), a truncated file and a foreign HDF5 file."""
    d = tmp_path / "spool"
    d.mkdir()
    for i in range(3):
        write_patches(d / f"good{i}.h5", make_batch(rng, 100 * i, 100))
    write_patches(d / "dup.h5", make_batch(rng, 250, 20))
    write_patches(d / "bad.h5", make_batch(rng, 300, 10))
    with h5py.File(d / "bad.h5", "r+") as f:
        f["x"][0, 3, 3, 3] = np.nan
        f["y"][1] = [0, 1]
    write_patches(d / "trunc.h5", make_batch(rng, 400, 10))
    data = (d / "trunc.h5").read_bytes()
    (d / "trunc.h5").write_bytes(data[: len(data) // 2])
    with h5py.File(d / "foreign.h5", "w") as f:
        f["data"] = np.zeros(3)
    return d


def test_once_accounts_for_every_patch(tmp_path, spool):
    cfg = make_config(tmp_path, capacity_per_rank=200)
    assert SelectorService(cfg).run(once=True) == 0
    acc = accounting(tmp_path / "state")
    good = set(range(310)) - {300, 301}
    assert acc["pooled"] | acc["selected"] | acc["evicted"] == good
    assert len(acc["pooled"]) + len(acc["selected"]) + len(acc["evicted"]) == len(good)
    assert acc["quarantined"] == set(range(250, 270)) | {300, 301}
    assert len(acc["selected"]) == 3 and len(acc["pooled"]) == 200 - 3  # picked after eviction
    jobs = tmp_path / "state" / "jobs"
    assert {int(p.name) for p in jobs.iterdir() if p.name.isdigit()} == acc["selected"]
    q = tmp_path / "spool" / "quarantine"
    assert {p.name for p in q.glob("*.h5")} == {"trunc.h5", "foreign.h5"}
    reason = json.loads((q / "foreign.h5.reason.json").read_text())["reason"]
    assert "not a mummi-ml patch file" in reason
    assert len(list((tmp_path / "spool" / "archive").glob("*.h5"))) == 5
    status = read_status(tmp_path / "state")
    assert status["state"] == "stopped" and status["quarantined_files"] == 2
    assert status["ingested"] == 330 and status["quarantined"] == 22
    assert status["selected"] == 3 and status["jobs"]["completed"] == 3
    lines = (tmp_path / "state" / "quarantine-rank-00000.jsonl").read_text().splitlines()
    reasons = {json.loads(s)["id"]: json.loads(s)["reason"] for s in lines}
    assert "non-finite" in reasons[300] and "n_raf > n_ras" in reasons[301]
    assert QUARANTINE_CODES[2] == "duplicate id"


def test_spool_file_is_archived_only_after_a_checkpoint_covers_it(tmp_path, rng):
    (tmp_path / "spool").mkdir()
    write_patches(tmp_path / "spool" / "a.h5", make_batch(rng, 0, 5))
    svc = SelectorService(make_config(tmp_path))
    svc.step(once=True)
    claimed = tmp_path / "spool" / "claimed" / "rank-00000" / "a.h5"
    assert claimed.exists() and len(svc.pool) == 5
    svc.checkpoint()
    assert not claimed.exists() and (tmp_path / "spool" / "archive" / "a.h5").exists()


def test_checkpoint_flushes_the_payload_segments_it_refers_to(tmp_path, rng):
    (tmp_path / "spool").mkdir()
    write_patches(tmp_path / "spool" / "a.h5", make_batch(rng, 0, 5))
    svc = SelectorService(make_config(tmp_path))
    svc.step(once=True)
    written = list(svc.payloads.unsynced)
    assert len(written) == 1 and written[0].exists()  # written at ingest, not yet fsynced
    svc.checkpoint()
    assert svc.payloads.unsynced == []
    assert svc.payloads.get(0, int(svc.pool.seg[0]), int(svc.pool.row[0])).ids[0] == svc.pool.ids[0]


def test_eviction_removes_the_least_novel(tmp_path, rng):
    (tmp_path / "spool").mkdir()
    first = make_batch(rng, 0, 30)
    write_patches(tmp_path / "spool" / "a.h5", first)
    svc = SelectorService(make_config(tmp_path, capacity_per_rank=40))
    svc.step(once=True)
    svc.select(2)
    second = make_batch(rng, 100, 30)
    write_patches(tmp_path / "spool" / "b.h5", second)
    svc.step(once=True)
    both = PatchBatch.concat([first, second])
    z = mean_concentrations(both.x)
    left = ~np.isin(both.ids, svc.selected.ids)
    nov = np.min(np.linalg.norm(z[left, None, :] - svc.selected.z[None], axis=2), axis=1)
    expect = set(both.ids[left][np.argsort(nov)[:18]].tolist())
    assert set(svc.ingestor.evicted_ids.tolist()) == expect
    assert len(svc.pool) == 40


def test_restart_continues_as_one_uninterrupted_selection(tmp_path, rng):
    (tmp_path / "spool").mkdir()
    a, b = make_batch(rng, 0, 60), make_batch(rng, 60, 60)
    write_patches(tmp_path / "spool" / "a.h5", a)
    SelectorService(make_config(tmp_path)).run(once=True)
    write_patches(tmp_path / "spool" / "b.h5", b)
    svc = SelectorService(make_config(tmp_path))
    svc.run(once=True)
    za, zb = mean_concentrations(a.x), mean_concentrations(b.x)
    p1, _ = reference_select(za, a.ids, 3)
    rest = np.setdiff1d(np.arange(120), p1)
    zall, ids = np.concatenate([za, zb]), np.concatenate([a.ids, b.ids])
    p2, _ = reference_select(zall[rest], ids[rest], 3, selected_z=za[p1])
    assert svc.selected.ids.tolist() == a.ids[p1].tolist() + ids[rest][p2].tolist()


def test_restart_with_another_embedding_is_refused(tmp_path, rng):
    from mummi_ml.selector import CheckpointError, Embedding

    (tmp_path / "spool").mkdir()
    write_patches(tmp_path / "spool" / "a.h5", make_batch(rng, 0, 5))
    SelectorService(make_config(tmp_path)).run(once=True)
    other = Embedding(lambda x: mean_concentrations(x)[:, :9], "other-v2", 9)
    with pytest.raises(CheckpointError, match="other-v2"):
        SelectorService(make_config(tmp_path), embedding=other)


def test_status_command_prints_the_counters(tmp_path, rng, capsys):
    from mummi_ml.cli import main

    (tmp_path / "spool").mkdir()
    write_patches(tmp_path / "spool" / "a.h5", make_batch(rng, 0, 7))
    SelectorService(make_config(tmp_path)).run(once=True)
    assert main(["status", str(tmp_path / "state")]) == 0
    out = capsys.readouterr().out
    assert "ingested     7 patches" in out and "selected     3" in out
    assert main(["status", str(tmp_path / "nowhere")]) == 2


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real metric trained for one epoch on 256 random patches (a few seconds)."""
    from mummi_ml.metric.train import train_model

    d = tmp_path_factory.mktemp("model")
    write_patches(d / "train.h5", make_batch(np.random.default_rng(0), 10**6, 256))
    cfg = load_config(None, ["train.epochs=1", "train.batch_size=64"])
    return train_model(cfg.model, cfg.loss, cfg.train, [d / "train.h5"], d / "model",
                       progress=False)


def test_once_with_a_trained_metric_picks_the_reference_and_tags_jobs(tmp_path, rng, tiny_model):
    from mummi_ml.metric import Metric

    (tmp_path / "spool").mkdir()
    batch = make_batch(rng, 0, 80)
    write_patches(tmp_path / "spool" / "a.h5", batch)
    cfg = make_config(tmp_path, embedding="model", model_dir=str(tiny_model), device="cpu")
    svc = SelectorService(cfg)
    svc.run(once=True)
    metric = Metric.load(tiny_model, device="cpu")
    z = metric.embed(batch.x, batch_size=cfg.selector.embed_batch_size)
    pos, _ = reference_select(z, batch.ids, 3)
    assert svc.selected.ids.tolist() == batch.ids[pos].tolist()
    job = json.loads((tmp_path / "state" / "jobs" / str(batch.ids[pos[0]]) / "job.json")
                     .read_text())
    assert metric.version in json.dumps(job)


def test_a_file_with_malformed_attributes_is_quarantined_and_the_rest_ingested(tmp_path, rng):
    (tmp_path / "spool").mkdir()
    write_patches(tmp_path / "spool" / "a.h5", make_batch(rng, 0, 5))
    write_patches(tmp_path / "spool" / "b.h5", make_batch(rng, 5, 5))
    with h5py.File(tmp_path / "spool" / "b.h5", "r+") as f:
        f.attrs["n_patches"] = "five"
    svc = SelectorService(make_config(tmp_path))
    svc.step(once=True)
    assert sorted(svc.pool.ids.tolist()) == list(range(5))
    note = tmp_path / "spool" / "quarantine" / "b.h5.reason.json"
    assert "n_patches" in json.loads(note.read_text())["reason"]


def test_patches_whose_embedding_is_not_finite_are_quarantined(tmp_path, rng):
    from mummi_ml.selector import Embedding

    def embed(x):
        z = mean_concentrations(x)
        z[x[:, 0, 0, 0] > 0.5] = np.nan
        return z

    (tmp_path / "spool").mkdir()
    batch = make_batch(rng, 0, 40)
    write_patches(tmp_path / "spool" / "a.h5", batch)
    svc = SelectorService(make_config(tmp_path), embedding=Embedding(embed, "nan-test", 14))
    svc.step(once=True)
    bad = set(batch.ids[batch.x[:, 0, 0, 0] > 0.5].tolist())
    assert bad and set(svc.ingestor.quarantined_ids.tolist()) == bad
    assert set(svc.pool.ids.tolist()) | set(svc.selected.ids.tolist()) == set(range(40)) - bad
    assert set(svc.ingestor.quarantined_codes.tolist()) == {4}


def test_a_pick_that_cannot_be_emitted_is_given_up_and_does_not_block_the_next(tmp_path, rng):
    from mummi_ml.selector.service import EMIT_FAILED_LOG, MAX_EMIT_ATTEMPTS

    (tmp_path / "spool").mkdir()
    write_patches(tmp_path / "spool" / "a.h5", make_batch(rng, 0, 20))
    svc = SelectorService(make_config(tmp_path))
    svc.step(once=True)
    real_get = svc.payloads.get
    svc.select(1)
    broken = int(svc.selected.ids[0])
    svc.payloads.get = lambda *a: (_ for _ in ()).throw(OSError("payload segment lost"))
    svc.selected.emitted[0] = False
    svc.emitter.emitted = lambda pid: False
    for _ in range(MAX_EMIT_ATTEMPTS):
        svc._emit_pending()
    assert svc.selected.emitted[0]
    svc.payloads.get = real_get
    del svc.emitter.emitted
    svc.select(1)
    assert svc.emitter.emitted(int(svc.selected.ids[1]))
    lines = (tmp_path / "state" / EMIT_FAILED_LOG).read_text().splitlines()
    assert [json.loads(s)["id"] for s in lines] == [broken]
