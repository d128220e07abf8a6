"""Malformed inputs to every subcommand that reads input: each is refused with exit status 2 and
ONE line on stderr (no traceback), without hanging, without leaving a final-named output and
without changing its inputs.

Most cases run in this process (``mummi_ml.cli.main``: torch is imported once); a handful run as
real ``python -m mummi_ml`` subprocesses with a timeout, which also covers FIFOs (a reader that
opened one would block forever).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mummi_ml.cli import main
from mummi_ml.patch import PatchBatch, write_patches

REPO = Path(__file__).resolve().parents[1]


# ---- inputs -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace with one good patch file, one trained model and one selector state dir,
    plus bad files of every kind, named by what is wrong with them."""
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    n = 16
    x = np.minimum(rng.gamma(2.0, 0.5, size=(n, 37, 37, 14)), 3.0).astype(np.float32)  # physical
    n_ras = rng.integers(0, 3, n)
    y = np.stack([n_ras, np.minimum(n_ras, rng.integers(0, 2, n))], 1).astype(np.int32)
    write_patches(d / "good.h5", PatchBatch.from_arrays(x, y, ids=np.arange(n)))
    from mummi_ml.metric import LossConfig, ModelConfig, TrainConfig, train_model

    cfg = TrainConfig(epochs=1, batch_size=8, num_threads=1, device="cpu", val_max_patches=8,
                      val_metric_patches=8, embed_batch_size=8)
    train_model(ModelConfig(latent_dim=3), LossConfig(), cfg, [d / "good.h5"], d / "model",
                progress=False)
    data = (d / "good.h5").read_bytes()
    (d / "truncated.h5").write_bytes(data[: len(data) // 3])
    (d / "empty.h5").write_bytes(b"")
    (d / "text.h5").write_text("not hdf5\n")
    os.mkfifo(d / "fifo.h5")
    os.mkfifo(d / "fifo.yaml")
    for name, edit in {
        "soft_link.h5": lambda f: (f.__delitem__("y"), f.__setitem__("y", h5py.SoftLink("/no"))),
        "no_x.h5": lambda f: f.__delitem__("x"),
        "newer.h5": lambda f: f.attrs.__setitem__("schema_version", 99),
        "foreign.h5": lambda f: f.attrs.__setitem__("schema", "other"),
        "incomplete.h5": lambda f: f.attrs.__delitem__("n_patches"),
        "n_str.h5": lambda f: f.attrs.__setitem__("n_patches", "many"),
        "n_wrong.h5": lambda f: f.attrs.__setitem__("n_patches", 3),
    }.items():
        shutil.copy(d / "good.h5", d / name)
        with h5py.File(d / name, "a") as f:
            edit(f)
    # models: metric.json broken in one way each
    meta = json.loads((d / "model" / "metric.json").read_text())
    bad_meta = {
        "no_latent_dim": {k: v for k, v in meta.items() if k != "latent_dim"},
        "str_latent_dim": {**meta, "latent_dim": "three"},
        "wrong_latent_dim": {**meta, "latent_dim": 7},
        "list_std": {**meta, "standardisation": [1, 2]},
        "no_config": {k: v for k, v in meta.items() if k != "config"},
        "list_meta": [1, 2, 3],
        "format_2": {**meta, "format": 2},
    }
    for name, m in bad_meta.items():
        md = d / f"model_{name}"
        shutil.copytree(d / "model", md)
        (md / "metric.json").write_text(json.dumps(m))
    md = d / "model_garbage_json"
    shutil.copytree(d / "model", md)
    (md / "metric.json").write_bytes(b"\xff\xfe{")
    md = d / "model_garbage_weights"
    shutil.copytree(d / "model", md)
    (md / "weights.pt").write_bytes(b"PK\x03\x04 nonsense")
    # configs
    (d / "binary.yaml").write_bytes(b"\x00\x01\x02\xff")
    (d / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (d / "deep.yaml").write_text("[" * 5000 + "]" * 5000)
    (d / "deep_map.yaml").write_text("".join("  " * i + f"k{i}:\n" for i in range(200)))
    (d / "bomb.yaml").write_text(
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n"
                  for p, c in zip("abcdefgh", "bcdefghi", strict=True)))
    (d / "bomb_in_field.yaml").write_text(
        'x0: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        'x1: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\ntrain:\n  learning_rates: [*b, *b]\n')
    (d / "recursive.yaml").write_text("a: &a [*a]\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "syntax.yaml").write_text("train: {epochs: 3\n")
    (d / "unknown.yaml").write_text("train:\n  epochz: 3\n")
    (d / "huge.yaml").write_text("# " + "x" * (2 << 20) + "\n")
    (d / "cfgdir.yaml").mkdir()
    # selector state dirs
    for name, text in {
        "status_garbage": b"{not json",
        "status_list": b"[1, 2]",
        "status_string": b'"running"',
        "status_types": json.dumps({"uptime_s": "long", "patches_per_s": []}).encode(),
        "status_binary": b"\xff\xfe\x00\x01",
        "status_jobs": json.dumps({"jobs": {"running": "two"}}).encode(),
        "status_checkpoint": json.dumps({"last_checkpoint": 7}).encode(),
        "status_negative": json.dumps({"selected": -3, "state": "running"}).encode(),
    }.items():
        (d / name).mkdir()
        (d / name / "status.json").write_bytes(text)
    (d / "status_dir").mkdir()
    (d / "status_dir" / "status.json").mkdir()
    (d / "jobdir_sup2" / "²").mkdir(parents=True)
    shutil.copy(d / "good.h5", d / "jobdir_sup2" / "²" / "patch.h5")
    # patches that read fine but fail the physical validation train applies
    for name, bad_x in {"unphysical.h5": -0.5, "nan_patch.h5": np.nan}.items():
        shutil.copy(d / "good.h5", d / name)
        with h5py.File(d / name, "a") as f:
            f["x"][3] = np.full((37, 37, 14), bad_x, np.float32)
    md = d / "model_nan_weights"  # a readable model whose every embedding is NaN
    shutil.copytree(d / "model", md)
    import torch

    state = torch.load(md / "weights.pt", map_location="cpu")
    for v in state.values():
        if torch.is_tensor(v) and v.is_floating_point():
            v.fill_(float("nan"))
    torch.save(state, md / "weights.pt")
    _selector_states(d)
    return d


def _selector_config(d: Path, state: Path) -> Path:
    """A quick selector config (model-free embedding, MD jobs that end at once) for ``state``."""
    import yaml

    cfg = d / "sc" / f"{state.name}.yaml"
    cfg.write_text(yaml.safe_dump({
        "selector": {"state_dir": str(state), "spool_dir": str(d / "out" / "spool"),
                     "embedding": "mean_concentrations", "poll_interval_s": 0.02,
                     "wait_timeout_s": 0.5, "status_interval_s": 0.2},
        "jobs": {"slots": 2, "command": ["{python}", "-c", "pass"], "poll_interval_s": 0.01}}))
    return cfg


def _selector_states(d: Path) -> None:
    """``sc/base``: the state directory of a real ``select --once`` run (a checkpoint, picks,
    payloads); ``sc/NAME``: a copy with one file broken as NAME says."""
    base = d / "sc" / "base"
    base.parent.mkdir()
    (d / "out" / "spool").mkdir(parents=True)
    shutil.copy(d / "good.h5", d / "out" / "spool" / "p0.h5")
    assert main(["select", "--once", "--config", str(_selector_config(d, base))]) == 0
    shutil.rmtree(d / "out")
    ck = "checkpoints/ckpt-00000000"
    picks = (base / "picks.jsonl").read_text().splitlines()
    last = json.loads(picks[-1])

    def text(rel: str, data: str | bytes):
        return lambda s: (s / rel).write_bytes(data if isinstance(data, bytes) else data.encode())

    def manifest(edit):
        def f(s: Path) -> None:
            p = s / ck / "manifest.json"
            p.write_text(json.dumps(edit(json.loads(p.read_text()))))
        return f

    def h5(rel: str, edit):
        def f(s: Path) -> None:
            with h5py.File(s / rel, "a") as h:
                edit(h)
        return f

    def external_z(h: h5py.File) -> None:  # pool/z's bytes come from another file
        z = h["pool/z"]
        shape, dtype = z.shape, z.dtype
        del h["pool/z"]
        h["pool"].create_dataset("z", shape=shape, dtype=dtype,
                                 external=[(str(d / "good.h5"), 0, int(np.prod(shape)) * 4)])

    def picks_with(line: str):
        return text("picks.jsonl", "\n".join(picks) + "\n" + line + "\n")

    cases = {
        "manifest_garbage": text(f"{ck}/manifest.json", b"{nope"),
        "manifest_list": text(f"{ck}/manifest.json", "[1, 2]"),
        "manifest_binary": text(f"{ck}/manifest.json", b"\xff\xfe\x00"),
        "manifest_no_dim": manifest(lambda m: {k: v for k, v in m.items() if k != "dim"}),
        "manifest_str_dim": manifest(lambda m: {**m, "dim": "x"}),
        "manifest_zero_ranks": manifest(lambda m: {**m, "n_ranks": 0}),
        "manifest_time_str": manifest(lambda m: {**m, "time": "noon"}),
        "manifest_groups_int": manifest(lambda m: {**m, "groups": 3}),
        "rank_garbage": text(f"{ck}/rank-00000.h5", b"garbage"),
        "rank_bad_covered": h5(f"{ck}/rank-00000.h5",
                               lambda h: h.attrs.__setitem__("covered", "{x")),
        "rank_bad_counters": h5(f"{ck}/rank-00000.h5",
                                lambda h: h.attrs.__setitem__("counters", "[1]")),
        "rank_z_wrong_shape": h5(f"{ck}/rank-00000.h5", lambda h: (
            h["pool"].__delitem__("z"), h["pool"].create_dataset("z", data=np.zeros((3, 2))))),
        "rank_external_storage": h5(f"{ck}/rank-00000.h5", external_z),
        "selected_no_ids": h5(f"{ck}/selected.h5", lambda h: h["selected"].__delitem__("ids")),
        "selected_soft_link": h5(f"{ck}/selected.h5", lambda h: (
            h.__delitem__("accepted_ids"), h.__setitem__("accepted_ids",
                                                         h5py.SoftLink("/selected/ids")))),
        "picks_garbage_line": text("picks.jsonl", "{bad\n" + "\n".join(picks) + "\n"),
        "picks_list_line": picks_with("[1, 2]"),
        "picks_missing_key": picks_with(json.dumps({"seq": len(picks)})),
        "picks_str_seq": picks_with(json.dumps({**last, "seq": str(len(picks))})),
        "picks_nan_z": picks_with(json.dumps({**last, "seq": len(picks), "z": [None] * 14})),
        "picks_short_z": picks_with(json.dumps({**last, "seq": len(picks), "z": [0.5]})),
        "picks_binary": text("picks.jsonl", b"\xff\xfe\x00\x01\n"),
    }
    for name, edit in cases.items():
        shutil.copytree(base, d / "sc" / name)
        edit(d / "sc" / name)
        _selector_config(d, d / "sc" / name)


def digest(paths: list[Path]) -> dict[str, str]:
    """sha256 of every regular file under ``paths`` (inputs must be unchanged by a refusal)."""
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused_in_process(argv: list[str], capsys) -> str:
    """Run ``mummi-ml ARGV`` in this process; assert exit 2 and one stderr line; return it."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, f"exit {rc}, stderr: {err[-2000:]}"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"{len(lines)} lines: {err[:2000]}"
    assert len(lines[0]) < 600
    return lines[0]


def refused_subprocess(argv: list[str], cwd: Path, timeout: float = 60) -> str:
    """The same through a real ``python -m mummi_ml`` process with a timeout (no hang)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "mummi_ml", *argv], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr[:2000]
    return proc.stderr


# ---- cases: (id, argv with {ws} for the workspace) ------------------------------------------

BAD_H5 = ["truncated.h5", "empty.h5", "text.h5", "soft_link.h5", "no_x.h5", "newer.h5",
          "foreign.h5", "incomplete.h5", "n_str.h5", "n_wrong.h5", "missing.h5", "fifo.h5"]
BAD_MODELS = ["model_no_latent_dim", "model_str_latent_dim", "model_wrong_latent_dim",
              "model_list_std", "model_no_config", "model_list_meta", "model_format_2",
              "model_garbage_json", "model_garbage_weights", "no_model"]
BAD_CONFIGS = ["binary.yaml", "latin1.yaml", "deep.yaml", "deep_map.yaml", "bomb.yaml",
               "bomb_in_field.yaml", "recursive.yaml", "list.yaml", "syntax.yaml", "unknown.yaml",
               "huge.yaml", "cfgdir.yaml", "fifo.yaml", "missing.yaml"]
BAD_SETS = [
    "loss.w_inv=.inf", "loss.w_inv=.nan", "loss.w_inv=-.inf", "train.learning_rates=[.nan]",
    "continuum.dt_us=.nan", "continuum.noise_strength=.inf", "evaluate.seed=-1",
    "train.seed=-5", "continuum.seed=-5", "jobs.relax_seed=-1", "continuum.seed=1e30",
    "model.profile_channels=[99]", "model.profile_channels=[-1]", "model.profile_channels=[]",
    "continuum.n_ras=1000000", "continuum.n_ras=-1", "train.epochs=ten", "train.epochs",
    "=3", "train..epochs=3", "train=3", "nothing.here=1", "train.epochs=[[[[[[[[[[[1]]]]]]]]]]]",
    "x" * 5000 + "=1", "train.epochs=" + "[" * 3000 + "]" * 3000,
]


def _h5_cases():
    for name in BAD_H5:
        yield f"info-{name}", ["info", "{ws}/" + name]
        yield f"info-json-{name}", ["info", "--json", "{ws}/" + name]
        yield f"embed-{name}", ["embed", "--model", "{ws}/model", "--data", "{ws}/" + name,
                                "--out", "{ws}/out/z.npy"]
        yield f"train-{name}", ["train", "--data", "{ws}/" + name, "--out", "{ws}/out/m"]
        yield f"evaluate-{name}", ["evaluate", "--model", "{ws}/model", "--data",
                                   "{ws}/" + name, "--out", "{ws}/out/ev"]
    yield "info-good-and-bad", ["info", "{ws}/good.h5", "{ws}/truncated.h5"]
    yield "info-glob-nothing", ["info", "{ws}/nothing*.h5"]
    yield "info-dir-without-h5", ["info", "{ws}/cfgdir.yaml"]


def _model_cases():
    for name in BAD_MODELS:
        yield f"embed-{name}", ["embed", "--model", "{ws}/" + name, "--data", "{ws}/good.h5",
                                "--out", "{ws}/out/z.npy"]
        yield f"evaluate-{name}", ["evaluate", "--model", "{ws}/" + name, "--data",
                                   "{ws}/good.h5", "--out", "{ws}/out/ev"]
    for dev in ["cuda", "cuda:3", "tpu", "cpu:x", ""]:
        yield f"embed-device-{dev or 'empty'}", ["embed", "--model", "{ws}/model", "--data",
                                                 "{ws}/good.h5", "--out", "{ws}/out/z.npy",
                                                 "--device", dev]
    yield "embed-out-not-npy", ["embed", "--model", "{ws}/model", "--data", "{ws}/good.h5",
                                "--out", "{ws}/out/z.txt"]
    yield "embed-out-dir-missing", ["embed", "--model", "{ws}/model", "--data", "{ws}/good.h5",
                                    "--out", "{ws}/nowhere/z.npy"]
    yield "embed-batch-0", ["embed", "--model", "{ws}/model", "--data", "{ws}/good.h5",
                            "--out", "{ws}/out/z.npy", "--batch-size", "0"]


def _config_cases():
    for name in BAD_CONFIGS:
        for cmd in (["config"], ["simulate", "--out", "{ws}/out/s.h5", "--patches", "4"],
                    ["couple", "--spool", "{ws}/out/spool", "--patches", "4"],
                    ["train", "--data", "{ws}/good.h5", "--out", "{ws}/out/m"],
                    ["relax", "{ws}/jobdir_sup2/²"],
                    ["sweep", "--data", "{ws}/good.h5", "--eval-data", "{ws}/good.h5",
                     "--out", "{ws}/out/sw", "--dry-run"],
                    ["select", "--once", "--state-dir", "{ws}/out/st"]):
            yield f"{cmd[0]}-config-{name}", [*cmd, "--config", "{ws}/" + name]
    for i, kv in enumerate(BAD_SETS):
        yield f"config-set-{i}", ["config", "--set", kv]
    for i, kv in enumerate(BAD_SETS[:12]):
        yield f"train-set-{i}", ["train", "--data", "{ws}/good.h5", "--out", "{ws}/out/m",
                                 "--set", kv]


def _value_cases():
    sim = ["simulate", "--out", "{ws}/out/s.h5"]
    yield "simulate-no-patches-per-frame", [*sim, "--patches", "4", "--set", "continuum.n_ras=0",
                                            "--set", "continuum.control_patches_per_frame=0"]
    yield "simulate-patches-negative", [*sim, "--patches", "-1"]
    yield "simulate-patches-text", [*sim, "--patches", "many"]
    yield "simulate-histories-negative", [*sim, "--histories", "-2"]
    yield "simulate-histories-without-ras", [*sim, "--histories", "1", "--set",
                                             "continuum.n_ras=0"]
    yield "simulate-plot-is-a-file", [*sim, "--patches", "4", "--plot", "{ws}/good.h5"]
    yield "simulate-plot-reference-missing", [*sim, "--patches", "4", "--plot", "{ws}/out/fig",
                                              "--plot-reference", "{ws}/missing.h5"]
    yield "simulate-compression", [*sim, "--compression", "11"]
    yield "simulate-replica-negative", [*sim, "--replica-offset", "-1"]
    cp = ["couple", "--spool", "{ws}/out/spool", "--patches", "4"]
    for rate in ["nan", "inf", "-1", "0", "1e-300", "fast"]:
        yield f"couple-rate-{rate}", [*cp, "--rate", rate]
    yield "couple-batch-0", [*cp, "--batch-size", "0"]
    yield "couple-replica-negative", [*cp, "--replica-offset", "-3"]
    yield "couple-no-sink", ["couple", "--patches", "4"]
    rx = ["relax", "{ws}/jobdir_sup2/²"]
    for v in ["inf", "nan", "-1", "-inf", "1e400"]:
        yield f"relax-duration-{v}", [*rx, "--duration-us", v]
    for v in ["-5", "-1", str(2**70)]:
        yield f"relax-seed-{v}", [*rx, "--seed", v]
    yield "relax-input-path", [*rx, "--input", "../good.h5"]
    yield "relax-missing-dir", ["relax", "{ws}/nowhere"]
    yield "relax-missing-patch", ["relax", "{ws}/cfgdir.yaml"]
    yield "relax-seed-config", [*rx, "--set", "jobs.relax_seed=-5"]
    for name in ["status_garbage", "status_list", "status_string", "status_types", "status_jobs",
                 "status_checkpoint", "status_negative",
                 "status_binary", "status_dir", "nowhere"]:
        yield f"status-{name}", ["status", "{ws}/" + name]
        yield f"status-json-{name}", ["status", "--json", "{ws}/" + name]
    yield "status-config-not-offered", ["status", "--config", "{ws}/list.yaml", "{ws}/model"]
    yield "info-set-not-offered", ["info", "--set", "a=1", "{ws}/good.h5"]
    yield "embed-config-not-offered", ["embed", "--config", "x.yaml", "--model", "{ws}/model",
                                       "--data", "{ws}/good.h5", "--out", "{ws}/out/z.npy"]
    yield "evaluate-ablation-syntax", ["evaluate", "--model", "{ws}/model", "--data",
                                       "{ws}/good.h5", "--out", "{ws}/out/ev", "--ablation", "x"]
    yield "sweep-eval-missing", ["sweep", "--data", "{ws}/good.h5", "--eval-data",
                                 "{ws}/missing.h5", "--out", "{ws}/out/sw"]
    for name in ["unphysical.h5", "nan_patch.h5"]:  # readable, but not physical patches
        yield f"embed-{name}", ["embed", "--model", "{ws}/model", "--data", "{ws}/good.h5",
                                "{ws}/" + name, "--out", "{ws}/out/z.npy"]
        yield f"train-{name}", ["train", "--data", "{ws}/" + name, "--out", "{ws}/out/m"]
    yield "embed-nan-embeddings", ["embed", "--model", "{ws}/model_nan_weights", "--data",
                                   "{ws}/good.h5", "--out", "{ws}/out/z.npy"]
    for name in SELECTOR_STATES:
        yield f"select-state-{name}", ["select", "--once", "--config", "{ws}/sc/" + name + ".yaml"]
    yield "no-such-command", ["frobnicate"]


SELECTOR_STATES = [
    "manifest_garbage", "manifest_list", "manifest_binary", "manifest_no_dim", "manifest_str_dim",
    "manifest_zero_ranks", "manifest_time_str", "manifest_groups_int", "rank_garbage",
    "rank_bad_covered", "rank_bad_counters", "rank_z_wrong_shape", "rank_external_storage",
    "selected_no_ids", "selected_soft_link", "picks_garbage_line", "picks_list_line",
    "picks_missing_key", "picks_str_seq", "picks_nan_z", "picks_short_z", "picks_binary",
]
CASES = [*_h5_cases(), *_model_cases(), *_config_cases(), *_value_cases()]
FINAL_OUTPUTS = ["out/z.npy", "out/z.txt", "out/s.h5", "out/m/metric.json", "out/ev/metrics.json",
                 "out/ev/report.html", "out/sw/sweep.md", "jobdir_sup2/²/result.h5"]


@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(argv, ws, capsys):
    """Every case: exit 2, one line, no final-named output, inputs unchanged, no temp files."""
    argv = [a.replace("{ws}", str(ws)) for a in argv]
    before = digest([ws / n for n in ("good.h5", "model", "jobdir_sup2")])
    (ws / "out").mkdir(exist_ok=True)
    try:
        refused_in_process(argv, capsys)
        for name in FINAL_OUTPUTS:
            assert not (ws / name).exists(), f"{name} written"
        left = [p.name for p in (ws / "out").rglob("*") if p.is_file()]
        left += [p.name for p in (ws / "jobdir_sup2" / "²").iterdir() if p.name != "patch.h5"]
        assert not left, f"left behind: {left}"
        assert digest([ws / n for n in ("good.h5", "model", "jobdir_sup2")]) == before
    finally:
        shutil.rmtree(ws / "out", ignore_errors=True)


def test_error_lines_are_cut_to_a_sane_length(ws, capsys):
    line = refused_in_process(["config", "--config", str(ws / "bomb_in_field.yaml")], capsys)
    assert "learning_rates" in line and len(line) < 600


def test_nan_and_inf_in_float_fields_name_the_field(capsys):
    line = refused_in_process(["config", "--set", "loss.w_inv=.inf"], capsys)
    assert "loss.w_inv" in line and "finite" in line


def test_config_and_set_are_not_offered_where_ignored(capsys):
    for cmd in ("info", "status", "embed"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "--config" not in capsys.readouterr().out


def test_relax_writes_into_a_job_dir_named_with_a_non_ascii_digit(ws, capsys):
    job = ws / "jobdir_ok" / "²"
    shutil.copytree(ws / "jobdir_sup2" / "²", job)
    assert main(["relax", str(job), "--duration-us", "0.05", "--seed", "1"]) == 0
    assert (job / "result.h5").exists()
    assert main(["info", "--json", str(job / "result.h5")]) == 0  # array attribute relax_seeds
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["attrs"]["relax_seeds"][:3] == [1, 2, 3]


def test_embed_refuses_patches_that_train_would_refuse(ws, capsys):
    line = refused_in_process(["embed", "--model", str(ws / "model"), "--data",
                               str(ws / "unphysical.h5"), "--out", str(ws / "z_unphys.npy")],
                              capsys)
    assert "unphysical.h5" in line and "patch 3" in line
    assert not list(ws.glob("*z_unphys*"))


def test_embed_never_writes_non_finite_embeddings(ws, capsys):
    line = refused_in_process(["embed", "--model", str(ws / "model_nan_weights"), "--data",
                               str(ws / "good.h5"), "--out", str(ws / "z_nan.npy")], capsys)
    assert "non-finite embedding" in line
    assert not list(ws.glob("*z_nan*"))


def test_checkpoint_with_external_storage_is_refused_on_restore(ws, capsys):
    line = refused_in_process(["select", "--once", "--config",
                               str(ws / "sc" / "rank_external_storage.yaml")], capsys)
    assert "rank-00000.h5" in line and "external storage" in line and "good.h5" in line


def test_status_refuses_values_of_the_wrong_type(ws, capsys):
    for argv in (["status", "--json", str(ws / "status_types")],
                 ["status", str(ws / "status_types")]):
        line = refused_in_process(argv, capsys)
        assert "'uptime_s' should be a number" in line


def _copy_state(ws: Path, name: str) -> Path:
    """A fresh copy of the base selector state as ``sc/NAME`` with its config."""
    dst = ws / "sc" / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(ws / "sc" / "base", dst)
    (ws / "out" / "spool").mkdir(parents=True, exist_ok=True)
    return dst


def test_select_drops_a_torn_last_line_of_the_picks_log(ws):
    """Documented recovery: a crash or full disk mid-append leaves an unfinished last line;
    the selector drops it (the pick was never emitted) and goes on."""
    state = _copy_state(ws, "picks_torn_last")
    picks = state / "picks.jsonl"
    complete = picks.read_text()
    picks.write_text(complete + complete.splitlines()[-1][:25])
    try:
        assert main(["select", "--once", "--config", str(_selector_config(ws, state))]) == 0
        assert picks.read_text().startswith(complete)
        assert all(json.loads(line) for line in picks.read_text().splitlines())
    finally:
        shutil.rmtree(ws / "out", ignore_errors=True)


def test_select_rewrites_a_malformed_status_file(ws):
    """Documented recovery: status.json is the selector's output, never read back by it."""
    state = _copy_state(ws, "status_malformed")
    (state / "status.json").write_bytes(b"\xff{not json")
    try:
        assert main(["select", "--once", "--config", str(_selector_config(ws, state))]) == 0
        assert json.loads((state / "status.json").read_text())["state"] == "stopped"
    finally:
        shutil.rmtree(ws / "out", ignore_errors=True)


# ---- real processes: the same contract through python -m mummi_ml (and FIFOs never block) -------

SUBPROCESS_CASES = [
    ["info", "{ws}/fifo.h5"],
    ["embed", "--model", "{ws}/model", "--data", "{ws}/fifo.h5", "--out", "{ws}/z.npy"],
    ["train", "--data", "{ws}/fifo.h5", "--out", "{ws}/m_fifo"],
    ["config", "--config", "{ws}/fifo.yaml"],
    ["config", "--config", "{ws}/bomb.yaml"],
    ["simulate", "--out", "{ws}/s.h5", "--patches", "3", "--set", "continuum.n_ras=0",
     "--set", "continuum.control_patches_per_frame=0"],
]


@pytest.mark.parametrize("argv", SUBPROCESS_CASES, ids=[" ".join(c[:2]) for c in SUBPROCESS_CASES])
def test_bad_input_in_a_real_process(argv, ws):
    refused_subprocess([a.replace("{ws}", str(ws)) for a in argv], cwd=ws, timeout=60)
    assert not (ws / "z.npy").exists() and not (ws / "s.h5").exists()
