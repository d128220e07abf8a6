"""Every counter of the selector is checkpointed, restored and reported: the fields of the typed
record :class:`mummi_ml.selector.counters.Counters` are what the checkpoint's rank file and
manifest hold, what a restart gets back and what status.json shows. A counter added to one of
these and not the others fails here."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import h5py
import numpy as np
from test_selector_accounting import make_batch, make_config

from mummi_ml.patch import write_patches
from mummi_ml.selector import SelectorService, read_status
from mummi_ml.selector.checkpoint import latest_checkpoint
from mummi_ml.selector.counters import Counters

NAMES = [f.name for f in fields(Counters)]


def _run_once(tmp_path: Path) -> SelectorService:
    (tmp_path / "spool").mkdir(exist_ok=True)
    write_patches(tmp_path / "spool" / "a.h5", make_batch(0, 30))
    (tmp_path / "spool" / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    svc = SelectorService(make_config(tmp_path, capacity_per_rank=10))
    assert svc.run(once=True) == 0
    return svc


def _rank_file_counters(ckpt: Path) -> dict:
    with h5py.File(ckpt / "rank-00000.h5", "r") as f:
        return json.loads(f.attrs["counters"])


def test_the_checkpoint_holds_every_counter_and_nothing_else(tmp_path):
    _run_once(tmp_path)
    ckpt, man = latest_checkpoint(tmp_path / "state")
    assert sorted(_rank_file_counters(ckpt)) == sorted(NAMES)
    assert sorted(man["counters"]) == sorted([*NAMES, "pooled"])


def test_status_reports_every_counter(tmp_path):
    _run_once(tmp_path)
    status = read_status(tmp_path / "state")
    assert set(NAMES) <= set(status)
    assert status["quarantined_files"] == 1 and status["evicted"] > 0  # the run counted


def test_a_restart_restores_every_counter(tmp_path):
    """Each counter set to its own value in the checkpoint comes back as that value."""
    _run_once(tmp_path)
    ckpt, _ = latest_checkpoint(tmp_path / "state")
    distinct = {k: 1000 + 7 * i for i, k in enumerate(NAMES)}
    with h5py.File(ckpt / "rank-00000.h5", "r+") as f:
        f.attrs["counters"] = json.dumps(distinct)
    svc = SelectorService(make_config(tmp_path))
    assert svc.state.counters == Counters(**distinct)


def test_a_checkpoint_without_the_newer_counters_restores_them_as_zero(tmp_path):
    """Checkpoints written before ``replayed`` and ``bad_messages`` existed still restore."""
    svc = _run_once(tmp_path)
    before = svc.state.counters
    ckpt, _ = latest_checkpoint(tmp_path / "state")
    old = {k: v for k, v in _rank_file_counters(ckpt).items()
           if k not in ("replayed", "bad_messages")}
    with h5py.File(ckpt / "rank-00000.h5", "r+") as f:
        f.attrs["counters"] = json.dumps(old)
    again = SelectorService(make_config(tmp_path)).state.counters
    assert again.replayed == 0 and again.bad_messages == 0
    assert again.ingested == before.ingested and again.accepted == before.accepted


def test_counters_round_trip_through_dict_and_array():
    c = Counters(**{k: i + 1 for i, k in enumerate(NAMES)})
    assert Counters.from_dict(c.to_dict()) == c
    assert Counters.from_array(c.to_array()) == c
    assert c.to_array().dtype == np.int64 and len(c.to_array()) == len(NAMES)
