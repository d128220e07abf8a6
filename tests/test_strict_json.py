"""Every JSON file mummi-ml writes is strict JSON (RFC 8259: no NaN, Infinity): a non-finite
number is written as null; the first pick's infinite novelty is null in job.json and
picks.jsonl and reads back as inf."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mummi_ml.config import load_config
from mummi_ml.jsonutil import finite_or_none, float_or_inf, json_dumps_strict
from mummi_ml.patch import PatchBatch, write_patches
from mummi_ml.selector import SelectorService
from mummi_ml.selector.picks_log import PicksLog


def strict_loads(text: str):
    def refuse(word: str):
        raise ValueError(f"not strict JSON: {word}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_everywhere_in_the_tree():
    data = {"a": math.inf, "b": [-math.inf, 1.5, float("nan")], "c": np.float32("nan"),
            "d": np.array([1.0, np.inf]), "e": {"f": (np.int64(3), True, None, "x")}}
    out = strict_loads(json_dumps_strict(data))
    assert out == {"a": None, "b": [None, 1.5, None], "c": None, "d": [1.0, None],
                   "e": {"f": [3, True, None, "x"]}}


def test_allow_nan_cannot_be_turned_back_on():
    assert json_dumps_strict([math.nan], allow_nan=True) == "[null]"


def test_default_results_are_cleaned_too():
    class Odd:
        pass

    assert json_dumps_strict({"o": Odd()}, default=lambda o: math.inf) == '{"o": null}'
    with pytest.raises(TypeError):
        json_dumps_strict({"o": Odd()})


def test_infinite_novelty_round_trips_as_null():
    assert finite_or_none(math.inf) is None and finite_or_none(2.5) == 2.5
    assert float_or_inf(None) == math.inf and float_or_inf(2.5) == 2.5


def test_every_json_file_of_a_selector_run_is_strict(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    rng = np.random.default_rng(0)
    x = rng.random((30, 37, 37, 14), dtype=np.float32)
    write_patches(spool / "a.h5", PatchBatch.from_arrays(x, np.zeros((30, 2), np.int32),
                                                         ids=np.arange(30)))
    (spool / "junk.h5").write_bytes(b"not hdf5")
    over = {"selector.state_dir": str(tmp_path / "state"), "selector.spool_dir": str(spool),
            "selector.embedding": "mean_concentrations", "jobs.slots": 3,
            "jobs.command": '["{python}", "-c", "pass"]', "jobs.poll_interval_s": 0.05}
    cfg = load_config(None, [f"{k}={v}" for k, v in over.items()])
    assert SelectorService(cfg).run(once=True) == 0
    files = [p for p in tmp_path.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file()]
    assert {p.name for p in files} >= {"status.json", "picks.jsonl", "job.json", "manifest.json",
                                       "junk.h5.reason.json"}
    for p in files:
        for line in (p.read_text().splitlines() if p.suffix == ".jsonl" else [p.read_text()]):
            if line.strip():
                strict_loads(line)
    state = tmp_path / "state"
    first = strict_loads((state / "picks.jsonl").read_text().splitlines()[0])
    assert first["seq"] == 0 and first["novelty"] is None
    job = strict_loads((state / "jobs" / str(first["id"]) / "job.json").read_text())
    assert job["novelty"] is None
    assert PicksLog(state / "picks.jsonl").read()[0]["novelty"] == math.inf


def test_metric_model_files_are_strict(tmp_path):
    from mummi_ml.metric import LossConfig, ModelConfig, TrainConfig, build_encoder
    from mummi_ml.metric.model_dir import write_model_dir
    from mummi_ml.patch import ChannelStats

    stats = ChannelStats.from_batches([np.full((2, 37, 37, 14), 0.5, np.float32)])
    d = write_model_dir(Path(tmp_path), build_encoder(ModelConfig(latent_dim=3)), stats,
                        ModelConfig(latent_dim=3), LossConfig(), TrainConfig(), "0" * 16,
                        extra={"note": math.nan})
    assert strict_loads((d / "metric.json").read_text())["note"] is None
