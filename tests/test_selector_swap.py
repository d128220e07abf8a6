"""Hot swap of the embedding model in a running selector (issue 16, item 3;
:mod:`mummi_ml.selector.swap`): after a swap the picks are those of a fresh selector started
with the new model on the same candidates and selected set (1 and 3 ranks, also for a model of
another latent dimension); the version change is recorded in the checkpoint, picks log,
job.json and status.json; a restart after a swap resumes on the new model although the config
names the first one; kill -9 during a swap restarts on the old or the new version with every
patch accounted for once."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from mummi_ml.config import load_config
from mummi_ml.metric import LossConfig, Metric, ModelConfig, train_model
from mummi_ml.patch import PatchBatch, write_patches
from mummi_ml.selector import (
    SelectorService,
    latest_checkpoint,
    load_rank_state,
    load_selected,
    reference_select,
)
from mummi_ml.selector.errors import CheckpointError
from mummi_ml.selector.picks_log import PicksLog
from mummi_ml.selector.status import format_status
from mummi_ml.selector.swap import CRASH_ENV
from tests.swap_runner import publish
from tests.test_metric_train import small_train
from tests.test_selector_service import make_batch


@dataclass(frozen=True)
class Models:
    """first: the campaign's model (d=9); tuned: fine-tuned from it (d=9, lineage); other: a
    model trained from scratch with d=5."""

    first: Path
    tuned: Path
    other: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Models:
    d = tmp_path_factory.mktemp("models")
    write_patches(d / "train.h5", make_batch(np.random.default_rng(0), 10**6, 96))
    train = small_train(epochs=1, batch_size=32)
    first = train_model(ModelConfig(), LossConfig(), train, [d / "train.h5"], d / "first",
                        progress=False)
    tuned = train_model(ModelConfig(), LossConfig(), small_train(epochs=1, batch_size=32, seed=7),
                        [d / "train.h5"], d / "tuned", progress=False, init_from=first)
    other = train_model(ModelConfig(latent_dim=5), LossConfig(), train, [d / "train.h5"],
                        d / "other", progress=False)
    return Models(first, tuned, other)


def _spool(tmp_path: Path, rng, n_files: int = 3, n: int = 30, start: int = 0) -> PatchBatch:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    batches = []
    for i in range(n_files):
        b = make_batch(rng, start + n * i, n)
        write_patches(spool / f"r{start}-{i}.h5", b)
        batches.append(b)
    return PatchBatch.concat(batches)


def _settings(tmp_path: Path, model: Path) -> dict:
    return {
        "selector": {
            "state_dir": str(tmp_path / "state"), "spool_dir": str(tmp_path / "spool"),
            "embedding": "model", "model_dir": str(model), "device": "cpu",
            "model_updates_dir": str(tmp_path / "updates"), "model_poll_interval_s": 0.01,
            "poll_interval_s": 0.05, "checkpoint_interval_s": 600, "ood_guard": False,
        },
        "jobs": {"slots": 20, "command": ["{python}", "-c", "pass"], "poll_interval_s": 0.1},
    }


def _config(tmp_path: Path, model: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_settings(tmp_path, model)))
    return load_config(path)


def _fresh_picks(patches: PatchBatch, model: Path, pool_ids, selected_ids, k: int,
                 batch_size: int) -> tuple[list[int], np.ndarray]:
    """What a fresh selector with ``model`` picks from these candidates after these picks: the
    eager reference on the embeddings of the original patches."""
    metric = Metric.load(model, device="cpu")
    where = {int(i): j for j, i in enumerate(patches.ids.tolist())}
    pool = np.array([where[int(i)] for i in pool_ids], np.int64)
    sel = np.array([where[int(i)] for i in selected_ids], np.int64)
    z = metric.embed(patches.x, batch_size=batch_size)
    cls = patches.y[:, 0]
    pos, nov = reference_select(z[pool], patches.ids[pool], k, classes=cls[pool],
                                selected_z=z[sel], selected_classes=cls[sel])
    return patches.ids[pool][pos].tolist(), nov


@pytest.mark.parametrize("new", ["tuned", "other"])
def test_picks_after_a_swap_are_those_of_a_fresh_selector_on_the_new_model(
        tmp_path, rng, models, new):
    patches = _spool(tmp_path, rng)
    cfg = _config(tmp_path, models.first)
    svc = SelectorService(cfg)
    svc.step(once=True)  # ingest everything; nothing published yet
    svc.select(4)
    first_version = svc.state.meta.model_version
    model = getattr(models, new)
    publish(model, tmp_path / "updates", "retrained")
    svc.step(once=True)
    version = Metric.load(model, device="cpu").version
    assert svc.state.meta.model_version == version != first_version
    assert svc.pool.dim == svc.selected.dim == (5 if new == "other" else 9)
    want, nov = _fresh_picks(patches, model, svc.pool.ids.copy(), svc.selected.ids.copy(), 6,
                             cfg.selector.embed_batch_size)
    m = len(svc.selected)
    assert svc.select(6) == 6
    assert svc.selected.ids[m:].tolist() == want
    np.testing.assert_allclose(svc.selected.novelty[m:], nov, rtol=1e-5)


def test_a_swap_is_recorded_in_checkpoint_picks_log_jobs_and_status(tmp_path, rng, models):
    _spool(tmp_path, rng)
    cfg = _config(tmp_path, models.first)
    svc = SelectorService(cfg)
    svc.step(once=True)
    svc.select(3)
    publish(models.tuned, tmp_path / "updates", "retrained")
    svc.step(once=True)
    svc.select(2)
    before, after = svc.selected.ids[:3].tolist(), svc.selected.ids[3:].tolist()
    svc.report()
    v0, v1 = (Metric.load(m, device="cpu").version for m in (models.first, models.tuned))
    state = tmp_path / "state"
    _, man = latest_checkpoint(state)
    assert man["model_version"] == v1
    assert [h["version"] for h in man["model_history"]] == [v0, v1]
    assert man["model_history"][1]["n_selected"] == 3
    log = PicksLog(state / "picks.jsonl")
    assert [e["model_version"] for e in log.read()] == [v0] * 3 + [v1] * 2
    (swap,) = log.read_swaps()
    assert (swap["from"], swap["to"], swap["n_selected"]) == (v0, v1, 3)
    for picks, v in ((before, v0), (after, v1)):
        for pid in picks:
            assert json.loads((state / "jobs" / str(pid) / "job.json").read_text())[
                "model_version"] == v
    status = json.loads((state / "status.json").read_text())
    assert status["model_version"] == v1
    assert [h["version"] for h in status["model_versions"]] == [v0, v1]
    assert status["model_versions"][1]["time"] >= status["model_versions"][0]["time"]
    assert f"model {v1}, 2 model versions" in format_status(status)


def test_a_restart_after_a_swap_resumes_on_the_new_model(tmp_path, rng, models):
    patches = _spool(tmp_path, rng)
    cfg = _config(tmp_path, models.first)
    svc = SelectorService(cfg)
    svc.step(once=True)
    svc.select(3)
    publish(models.other, tmp_path / "updates", "retrained")
    svc.step(once=True)
    svc.select(2)
    svc.checkpoint()
    again = SelectorService(_config(tmp_path, models.first))  # the config still names the first
    assert again.state.meta.model_version == Metric.load(models.other, device="cpu").version
    assert len(again.state.meta.history) == 2 and again.pool.dim == 5
    want, _ = _fresh_picks(patches, models.other, again.pool.ids.copy(),
                           again.selected.ids.copy(), 3, cfg.selector.embed_batch_size)
    m = len(again.selected)
    again.select(3)
    assert again.selected.ids[m:].tolist() == want


def test_a_checkpoint_of_another_campaigns_model_is_still_refused(tmp_path, rng, models):
    _spool(tmp_path, rng)
    svc = SelectorService(_config(tmp_path, models.first))
    svc.step(once=True)
    publish(models.tuned, tmp_path / "updates", "retrained")
    svc.step(once=True)
    svc.checkpoint()
    with pytest.raises(CheckpointError, match="use the same model or a new state_dir"):
        SelectorService(_config(tmp_path, models.other))


def test_a_model_that_does_not_load_is_refused_and_the_selector_goes_on(tmp_path, rng, models,
                                                                       caplog):
    _spool(tmp_path, rng)
    svc = SelectorService(_config(tmp_path, models.first))
    svc.step(once=True)
    svc.select(2)
    bad = publish(models.tuned, tmp_path / "updates", "broken")
    (bad / "weights.pt").write_bytes(b"not torch")
    version = svc.state.meta.model_version
    svc.step(once=True)
    assert svc.state.meta.model_version == version
    assert "refused, the selector keeps model" in caplog.text
    assert svc.select(2) == 2  # and it goes on selecting with the old model


def test_picks_after_a_swap_on_three_ranks_are_those_of_a_fresh_selector(
        run_mpi, tmp_path, rng, models):
    patches = _spool(tmp_path, rng, n_files=6, n=20)
    cfg = _config(tmp_path, models.first)
    out = tmp_path / "out.json"
    run_mpi(3, ["-m", "tests.swap_runner", str(tmp_path / "cfg.yaml"), str(out),
                str(models.other), "4", "6"], timeout=240)
    got = json.loads(out.read_text())
    version = Metric.load(models.other, device="cpu").version
    assert got["dims"] == [[5, 5, version]] * 3
    assert len(got["pool_ids"]) == len(patches) - 4
    want, nov = _fresh_picks(patches, models.other, got["pool_ids"], got["selected_ids"], 6,
                             cfg.selector.embed_batch_size)
    assert got["after"] == want
    np.testing.assert_allclose(got["after_novelty"], nov, rtol=1e-5)


def _crash_settings(model: Path) -> dict:
    """Paths relative to the run directory (so a prepared run directory can be copied)."""
    return {
        "selector": {
            "state_dir": "state", "spool_dir": "spool", "embedding": "model",
            "model_dir": str(model), "device": "cpu", "model_updates_dir": "updates",
            "model_poll_interval_s": 0.01, "poll_interval_s": 0.05, "ood_guard": False,
            "files_per_poll": 2,
        },
        "jobs": {"slots": 3, "command": ["{python}", "-c", "pass"], "poll_interval_s": 0.1},
    }


_CAMPAIGN: dict[str, tuple[Path, set[int]]] = {}


@pytest.fixture
def campaign(run_mpi, tmp_path_factory, models) -> tuple[Path, set[int]]:
    """A run directory after one ``select --once`` on 3 ranks with the first model (picks
    made, jobs done), and the ids written so far (made once per module, then copied)."""
    if "base" in _CAMPAIGN:
        return _CAMPAIGN["base"]
    d = tmp_path_factory.mktemp("campaign")
    (d / "cfg.yaml").write_text(yaml.safe_dump(_crash_settings(models.first)))
    patches = _spool(d, np.random.default_rng(5), n_files=3, n=20)
    run_mpi(3, ["-m", "mummi_ml", "select", "--config", "cfg.yaml", "--once"], cwd=d,
            timeout=240)
    _CAMPAIGN["base"] = d, set(patches.ids.tolist())
    return _CAMPAIGN["base"]


def _check_books(state: Path, written: set[int]) -> list[int]:
    """Balance in status.json and the newest checkpoint; every written patch in exactly one of
    pool, selected set, evicted; one job per pick, submitted once. Returns the picks."""
    st = json.loads((state / "status.json").read_text())
    assert st["ingested"] == st["accepted"] + st["quarantined"], st
    assert st["accepted"] == st["pooled"] + st["selected"] + st["evicted"], st
    ckpt, man = latest_checkpoint(state)
    c = man["counters"]
    assert c["ingested"] == c["accepted"] + c["quarantined"] == len(written), man
    assert c["accepted"] == c["pooled"] + man["n_selected"] + c["evicted"], man
    rank = load_rank_state(ckpt, man, 0, 1)
    selected = load_selected(ckpt)[0]["ids"].tolist()
    every = rank.pool["ids"].tolist() + rank.evicted_ids.tolist() + selected
    assert sorted(every) == sorted(written), "a patch is lost, invented or in two places"
    picks = [e["id"] for e in PicksLog(state / "picks.jsonl").read()]
    assert picks == selected, "the picks log and the selected set disagree (a pick repeated?)"
    jobs = {int(p.name) for p in (state / "jobs").iterdir() if p.name.isdigit()}
    assert jobs == set(selected)
    intents = [json.loads(line) for line in (state / "jobs.journal").read_text().splitlines()]
    submitted = [(e["patch_id"], e["attempt"]) for e in intents if e.get("event") == "intent"]
    assert len(submitted) == len(set(submitted)), "a job was submitted twice"
    return selected


@pytest.mark.mpi
@pytest.mark.parametrize(("point", "survives"), [
    ("reembedded:1", "old"), ("before_manifest:0", "old"), ("after_manifest:2", "new")])
def test_kill_9_during_a_swap_restarts_on_the_old_or_the_new_version_losing_nothing(
        run_mpi, tmp_path, models, campaign, point, survives):
    base, written = campaign
    run = tmp_path / "run"
    shutil.copytree(base, run)
    written = written | set(_spool(run, np.random.default_rng(6), n_files=3, n=20,
                                   start=1000).ids.tolist())
    v0, v1 = (Metric.load(m, device="cpu").version for m in (models.first, models.other))
    publish(models.other, run / "updates", "retrained")
    proc = run_mpi(3, ["-m", "mummi_ml", "select", "--config", "cfg.yaml", "--once"], cwd=run,
                   timeout=240, check=False, env={CRASH_ENV: point})
    assert proc.returncode != 0  # the rank killed itself at the crash point (rank 0 before
    # the manifest: it is never written; another rank there races rank 0 writing it: either)
    _, man = latest_checkpoint(run / "state")
    assert man["model_version"] == {"old": v0, "new": v1}[survives]
    run_mpi(3, ["-m", "mummi_ml", "select", "--config", "cfg.yaml", "--once"], cwd=run,
            timeout=240)
    _, man = latest_checkpoint(run / "state")
    assert [h["version"] for h in man["model_history"]] == [v0, v1]
    assert man["dim"] == 5
    _check_books(run / "state", written)
    swaps = PicksLog(run / "state" / "picks.jsonl").read_swaps()
    assert [(s["from"], s["to"]) for s in swaps] == [(v0, v1)]
