"""The selector service coupled to a workflow manager: producer names and classes travel spool ->
pool -> picks -> handoff records -> live weights; MuMMI's queues set the shares of the picks."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from mummi_ml.backends import HandoffConsumer
from mummi_ml.config import load_config
from mummi_ml.patch import PatchBatch, write_patches
from mummi_ml.selector import SelectorService
from mummi_ml.selector.live_weights import read_weights

QUEUES_YAML = """
selector:
  queues:
    default: invalid
    queues:
      - {name: lipid-only, share: 0.1, types: [ras0raf0]}
      - {name: monomers, share: 0.5, types: [ras1raf0, ras1raf1]}
      - {name: dimers, share: 0.4, types: ["ras2raf*"],
         bins: {edges: [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]}}
      - {name: invalid, share: 0.0}
  random_picks: 2
  random_seed: 7
"""


def make_batch(rng, start: int, n: int) -> PatchBatch:
    x = rng.random((n, 37, 37, 14), dtype=np.float32)
    y = np.array([(0, 0), (1, 0), (1, 1), (2, 0), (2, 2), (3, 1)])[rng.integers(0, 6, n)]
    ids = np.arange(start, start + n, dtype=np.uint64)
    return PatchBatch.from_arrays(x, y, ids=ids, names=[f"mu-24-run_{i:012d}" for i in ids],
                                  bin_value=rng.uniform(0, 24, n))


def make_config(tmp_path: Path, **over):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(QUEUES_YAML)
    sets = {"selector.state_dir": str(tmp_path / "state"),
            "selector.spool_dir": str(tmp_path / "spool"),
            "selector.embedding": "mean_concentrations", "selector.poll_interval_s": 0.05,
            "selector.wait_timeout_s": 0.5, "jobs.backend": "handoff", "jobs.slots": 40,
            "jobs.poll_interval_s": 0.05, **over}
    return load_config(cfg_file, [f"{k}={v}" for k, v in sets.items()])


@pytest.fixture
def spool(tmp_path, rng):
    d = tmp_path / "spool"
    d.mkdir()
    for i in range(4):
        write_patches(d / f"f{i}.h5", make_batch(rng, 100 * i, 100))
    return d


def test_picks_are_handed_over_with_producer_names_and_queue_shares(tmp_path, spool):
    assert SelectorService(make_config(tmp_path)).run(once=True) == 0
    recs = HandoffConsumer(tmp_path / "state").list()
    assert len(recs) == 40
    assert all(r.producer_name == f"mu-24-run_{r.patch_id:012d}" for r in recs)
    shares = np.bincount([r.cls for r in recs], minlength=4) / 40
    assert shares.tolist() == [0.1, 0.5, 0.4, 0.0]  # lipid-only, monomers, dimers, invalid
    types = {r.patch_type for r in recs if r.cls == 2}
    assert types <= {"ras2raf0", "ras2raf2"}


def test_weights_are_written_with_every_checkpoint_keyed_by_id_and_name(tmp_path, spool):
    assert SelectorService(make_config(tmp_path)).run(once=True) == 0
    w = read_weights(tmp_path / "state")
    assert len(w.ids) == 40 and w.names == [f"mu-24-run_{int(i):012d}" for i in w.ids]
    assert w.raw.sum() == 400  # 40 picks + 360 candidates left, each counted once
    assert w.weights.mean() == pytest.approx(1.0, rel=1e-6)
    assert w.lookup([w.names[3], int(w.ids[5])]).tolist() == [w.weights[3], w.weights[5]]
    with pytest.raises(KeyError, match="not a selected patch"):
        w.lookup(["mu-unknown"])


def test_sigusr1_writes_fresh_weights_while_the_service_goes_on(tmp_path, spool):
    svc = SelectorService(make_config(tmp_path))
    svc.install_signal_handlers()
    svc.step()  # ingest a file, pick
    signal.raise_signal(signal.SIGUSR1)
    svc.step()
    w = read_weights(tmp_path / "state")
    assert len(w.ids) == len(svc.selected) > 0
    assert json.loads((tmp_path / "state" / "weights.json").read_text())["checkpoint"] == 0
    svc.run(once=True)


def test_names_survive_the_payloads_of_emitted_picks(tmp_path, spool):
    svc = SelectorService(make_config(tmp_path))
    svc.run(once=True)
    names = read_weights(tmp_path / "state").names
    again = SelectorService(make_config(tmp_path))  # restart: payloads of picks are gone
    again.checkpoint()
    assert read_weights(tmp_path / "state").names == names


def test_a_restart_with_other_queues_is_refused(tmp_path, spool):
    from mummi_ml.selector import CheckpointError

    SelectorService(make_config(tmp_path)).run(once=True)
    flat = load_config(None, [f"selector.state_dir={tmp_path / 'state'}",
                              f"selector.spool_dir={tmp_path / 'spool'}",
                              "selector.embedding=mean_concentrations"])
    with pytest.raises(CheckpointError, match="selection groups"):
        SelectorService(flat)
