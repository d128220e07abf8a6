"""MuMMI's PatchSelector API in-process: driven through a ``multiprocessing`` manager proxy with
MuMMI's call sequence (add, select, weights, checkpoint, restore, select again) on continuum
patches with string names, a trained metric and MuMMI's four queues."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from mummi_ml.selector.mummi_api import MummiPatch, PatchSelector, SelectorManager

pytestmark = pytest.mark.timeout(300)

SHARES = {"lipid-only": 0.1, "monomers": 0.5, "dimers": 0.4, "invalid": 0.0}


def queue_of(p: MummiPatch) -> str:
    t = p.type()
    if t == "ras0raf0":
        return "lipid-only"
    if t in ("ras1raf0", "ras1raf1"):
        return "monomers"
    return "dimers" if t.startswith("ras2raf") else "invalid"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """400 continuum patches as MuMMI-like objects, and a metric trained on them."""
    from mummi_ml.config import load_config
    from mummi_ml.continuum.simulate import simulate_patches
    from mummi_ml.metric.train import train_model
    from mummi_ml.patch import PatchBatch, write_patches

    batch = PatchBatch.concat(list(simulate_patches(None, 400, preset="campaign")))
    d = tmp_path_factory.mktemp("campaign")
    write_patches(d / "train.h5", batch)
    cfg = load_config(None, ["train.epochs=1", "train.batch_size=64"])
    train_model(cfg.model, cfg.loss, cfg.train, [d / "train.h5"], d / "model", progress=False)
    rng = np.random.default_rng(0)
    patches = [MummiPatch(id=f"mu-24-campaign_{int(i):012d}", concentrations=x,
                          n_ras=int(y[0]), n_raf=int(y[1]),
                          dimer_distance=float(rng.uniform(0, 24)) if y[0] == 2 else np.nan)
               for i, x, y in zip(batch.ids, batch.x, batch.y, strict=True)]
    return d, patches


def mummi_config(model_root) -> dict:
    return {"buffer_sz": 10000, "min_cands_b4_sel": 50, "min_rand_b4_importance": 2,
            "path": str(model_root), "encoder": "model", "mummi_ml": {"device": "cpu"}}


def test_mummi_call_sequence_through_a_manager_proxy(campaign, tmp_path):
    root, patches = campaign
    by_name = {p.id: p for p in patches}
    m = SelectorManager(ctx=multiprocessing.get_context("spawn"))
    m.start()
    try:
        sel = m.PatchSelector("importance", str(tmp_path / "ws"), mummi_config(root))
        assert sel.select(10) == []  # fewer than min_cands_b4_sel candidates: no pick
        sel.add_candidates(patches[:250])
        first = sel.select(40)
        assert len(first) == len(set(first)) == 40 and all(isinstance(n, str) for n in first)
        names, w = sel.get_weights(first[:5])
        assert list(names) == first[:5] and w.dtype == np.float32
        _, all_w = sel.get_weights()
        assert all_w.mean() == pytest.approx(1.0, rel=1e-5)
        sel.checkpoint()
        assert sel.test()
        sel.add_candidates(patches[250:])  # the stream goes on; the restored one gets it too
        expected = sel.select(20)
        again = m.PatchSelector("importance", str(tmp_path / "ws"), mummi_config(root))
        assert again.restore()
        again.add_candidates(patches[250:])
        assert again.select(20) == expected  # restore continues the same selection
        assert again.test()
    finally:
        m.shutdown()
    picks = first + expected
    got = {q: sum(queue_of(by_name[n]) == q for n in picks) / len(picks) for q in SHARES}
    assert got == SHARES


def test_random_selector_and_duplicate_names(campaign, tmp_path):
    _, patches = campaign
    sel = PatchSelector("random", str(tmp_path), {"mummi_ml": {"embedding":
                                                              "mean_concentrations"}})
    sel.add_candidates(patches[:100])
    sel.add_candidates(patches[:10])  # known names are skipped
    assert sel.num_candidates() == 100
    a = sel.select(10)
    other = PatchSelector("random", str(tmp_path / "b"), {"mummi_ml": {"embedding":
                                                                      "mean_concentrations"}})
    other.add_candidates(list(reversed(patches[:100])))
    assert other.select(10) != [] and len(a) == 10
    with pytest.raises(ValueError, match="not a selected patch"):
        sel.get_weights(["mu-nothing"])


def test_restore_without_a_checkpoint_is_false(tmp_path):
    sel = PatchSelector("importance", str(tmp_path), {"mummi_ml": {"embedding":
                                                                  "mean_concentrations"}})
    assert sel.restore() is False and sel.test()
