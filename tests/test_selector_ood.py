"""The out-of-domain guard: training writes a summary of where its patches embed
(``embedding_domain.json``); the selector quarantines (code 6) embeddings far outside it, so
farthest-point selection never picks an extrapolation first."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import train_tiny_model

from mummi_ml.config import load_config
from mummi_ml.metric import Metric, MetricError
from mummi_ml.metric.domain import DOMAIN_FILE, load_domain, summarise_embeddings
from mummi_ml.patch import PatchBatch, mean_concentrations, write_patches
from mummi_ml.selector import Embedding, SelectorService, make_embedding, read_status
from mummi_ml.selector.ood import make_domain_guard


def batch(start: int, n: int, level: float = 0.0) -> PatchBatch:
    rng = np.random.default_rng(start)
    x = (level + rng.random((n, 37, 37, 14), dtype=np.float32)).astype(np.float32)
    return PatchBatch.from_arrays(x, np.zeros((n, 2), np.int32),
                                  ids=np.arange(start, start + n, dtype=np.uint64))


def config(tmp_path: Path, **sel):
    over = {"selector.state_dir": str(tmp_path / "state"),
            "selector.spool_dir": str(tmp_path / "spool"),
            "selector.embedding": "mean_concentrations", "jobs.slots": 3,
            "jobs.command": '["{python}", "-c", "pass"]', "jobs.poll_interval_s": 0.05,
            **{f"selector.{k}": v for k, v in sel.items()}}
    return load_config(None, [f"{k}={v}" for k, v in over.items()])


@pytest.fixture
def guarded_embedding() -> Embedding:
    """Mean concentrations with the domain of 200 'training' patches (uniform in [0, 1))."""
    domain = summarise_embeddings(mean_concentrations(batch(10_000, 200).x), "mc")
    return Embedding(mean_concentrations, "mean_concentrations", 14, domain)


def _spool_with_far_patch(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir()
    write_patches(tmp_path / "spool" / "a.h5", batch(0, 40))
    write_patches(tmp_path / "spool" / "far.h5", batch(1000, 1, level=2.0))  # physical, far


def test_far_embedding_is_quarantined_with_its_own_code_and_never_picked(tmp_path,
                                                                         guarded_embedding):
    _spool_with_far_patch(tmp_path)
    svc = SelectorService(config(tmp_path), embedding=guarded_embedding)
    assert svc.run(once=True) == 0
    lines = (tmp_path / "state" / "quarantine-rank-00000.jsonl").read_text().splitlines()
    log = [json.loads(s) for s in lines]
    assert [(e["id"], e["code"]) for e in log] == [(1000, 6)]
    assert "training q99 distance" in log[0]["reason"]
    status = read_status(tmp_path / "state")
    assert status["quarantined"] == 1 and status["accepted"] == 40 and status["selected"] == 3
    jobs = {int(p.name) for p in (tmp_path / "state" / "jobs").iterdir() if p.name.isdigit()}
    assert 1000 not in jobs


def test_without_the_guard_the_far_patch_is_picked_first_after_the_seed(tmp_path,
                                                                        guarded_embedding):
    """What the guard prevents: farthest-point selection goes straight for the outlier."""
    _spool_with_far_patch(tmp_path)
    svc = SelectorService(config(tmp_path, ood_guard=False), embedding=guarded_embedding)
    assert svc.run(once=True) == 0
    picks = [json.loads(s) for s in (tmp_path / "state" / "picks.jsonl").read_text().splitlines()]
    assert picks[1]["id"] == 1000


def test_threshold_is_configurable_and_must_exceed_one(tmp_path):
    assert config(tmp_path).selector.ood_threshold == 3.0
    assert config(tmp_path, ood_threshold=10).selector.ood_threshold == 10.0
    for bad in ("1", "0.5", "nan", "inf"):
        with pytest.raises(Exception, match="ood_threshold"):
            config(tmp_path, ood_threshold=bad)


def test_a_model_without_a_domain_summary_runs_unguarded_with_a_warning(tmp_path, caplog):
    cfg = config(tmp_path, embedding="model", model_dir=str(tmp_path / "old-model"))
    emb = Embedding(mean_concentrations, "old", 14, None)
    with caplog.at_level(logging.WARNING, logger="mummi_ml.selector"):
        assert make_domain_guard(cfg.selector, emb) is None
    assert "no embedding_domain.json" in caplog.text


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_tiny_model(batch(0, 64), tmp_path_factory.mktemp("ood"))


def test_training_writes_the_domain_of_its_embeddings(trained):
    meta = json.loads((trained / DOMAIN_FILE).read_text())
    m = Metric.load(trained, device="cpu")
    assert meta["model_version"] == m.version and meta["n_patches"] == 64
    z = m.embed(batch(0, 64).x)
    np.testing.assert_allclose(meta["centroid"], z.mean(0), rtol=1e-4, atol=1e-5)
    r = np.linalg.norm(z - z.mean(0), axis=1)
    q = meta["radius_quantiles"]
    assert q["q50"] <= q["q90"] <= q["q99"] <= q["max"] == pytest.approx(r.max(), rel=1e-4)


def test_the_selector_loads_the_domain_with_the_model(trained, tmp_path):
    cfg = config(tmp_path, embedding="model", model_dir=str(trained), device="cpu")
    emb = make_embedding(cfg.selector)
    assert emb.domain is not None and emb.domain.model_version == emb.version
    assert make_domain_guard(cfg.selector, emb).threshold == 3.0
    off = config(tmp_path, embedding="model", model_dir=str(trained), device="cpu",
                 ood_guard=False)
    assert make_embedding(off.selector).domain is None


def test_a_domain_of_other_weights_is_refused(trained, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(trained, copy)
    meta = json.loads((copy / DOMAIN_FILE).read_text())
    meta["model_version"] = "000000000000"
    (copy / DOMAIN_FILE).write_text(json.dumps(meta))
    with pytest.raises(MetricError, match="summarises model 000000000000"):
        load_domain(copy, Metric.load(copy, device="cpu").version)
