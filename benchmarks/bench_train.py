"""Benchmark of metric training and embedding throughput (CPU; GPU when one is present).

Prints a short table and then one JSON object (the last line of stdout). Figures:

- ``train_samples_per_s_1thread`` / ``_2threads``: training samples per second in one process,
  a sample being one patch with its 5 transformations (6 encoder passes), at the paper's global
  batch of 128, full loss (invariance + radial + label), Adam step included, data from memory;
- ``train_samples_per_s_2ranks_1thread``: the same under ``mpiexec -n 2`` (gloo, 1 thread per
  rank, global batch 128 = 64 per rank, gathered loss and synchronised BatchNorm);
- ``embed_patches_per_s_1thread`` / ``_2threads``: ``Metric.embed`` on raw patches (batch 4096);
- ``train_profile`` / ``embed_profile``: share of CPU time of the top operators (torch profiler);
- ``*_per_cpu_s_1thread``: the same per CPU-second of the process (one thread: the rate an idle
  core would give; a lower bound on the wall-clock rates when the machine is shared);
- ``group_*``: the same figures for the group model (``model.invariance: group``: 8 views per
  patch in training and embedding, loss without L_inv, as that model is trained);
- ``gpu``: the same figures on ``cuda:0`` if a GPU is present, else "not measured: no GPU lent".

Every figure is the median of ``--repeats`` timed runs after a warm-up. Usage:
``python benchmarks/bench_train.py [--repeats 5] [--steps 5] [--embed 8192]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mummi_ml.metric import LossConfig, Metric, ModelConfig, TrainConfig, Trainer, write_model_dir
from mummi_ml.metric.model_dir import build_encoder
from mummi_ml.patch import ChannelStats, PatchBatch, write_patches

BATCH = 128


def make_data(path: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 0.5, size=(n, 37, 37, 14)).astype(np.float32)
    n_ras = rng.integers(0, 3, n)
    y = np.stack([n_ras, np.minimum(n_ras, rng.integers(0, 2, n))], 1).astype(np.int32)
    write_patches(path, PatchBatch.from_arrays(x, y, ids=np.arange(n)))
    return path


def _configs(invariance: str) -> tuple[ModelConfig, LossConfig]:
    """The paper's model and loss, or the group model trained without L_inv."""
    if invariance == "group":
        return ModelConfig(invariance="group"), LossConfig(w_inv=0.0)
    return ModelConfig(), LossConfig()


def _trainer(data: Path, out: Path, ctx, device: str, invariance: str = "learned") -> Trainer:
    cfg = TrainConfig(epochs=1, batch_size=BATCH, device=device, num_threads=0)
    model_cfg, loss_cfg = _configs(invariance)
    tr = Trainer(model_cfg, loss_cfg, cfg, [data], out, ctx, progress=False)
    tr._setup(resume=False)
    return tr


def time_training(tr: Trainer, steps: int, repeats: int, cpu: list | None = None) -> list[float]:
    """Samples/s of ``repeats`` runs of ``steps`` steps (batches fetched inside the timing);
    samples per CPU-second of this process are appended to ``cpu`` (less sensitive to load)."""
    it = iter(tr.data.batches(0))
    tr.train_step(next(it))  # warm-up
    rates = []
    for _ in range(repeats):
        batches = tr.data.batches(0)
        if tr.ctx.device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for _, b in zip(range(steps), batches, strict=False):
            tr.train_step(b)
        if tr.ctx.device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(steps * BATCH / (time.perf_counter() - t0))
        if cpu is not None:
            cpu.append(steps * BATCH / (time.process_time() - c0))
    return rates


def profile_top(fn, k: int = 6) -> list[list]:
    """``[[operator, % of self CPU time], ...]`` of the top k operators of one call of fn."""
    from torch.profiler import profile

    with profile() as prof:
        fn()
    rows = prof.key_averages()
    total = sum(r.self_cpu_time_total for r in rows) or 1.0
    top = sorted(rows, key=lambda r: r.self_cpu_time_total, reverse=True)[:k]
    return [[r.key, round(100.0 * r.self_cpu_time_total / total, 1)] for r in top]


def worker(args: argparse.Namespace) -> None:
    """One rank of the 2-rank measurement (run under mpiexec)."""
    from mummi_ml.parallel import init_distributed

    ctx = init_distributed("cpu", 1)
    tr = _trainer(Path(args.data), Path(args.out), ctx, "cpu", args.invariance)
    rates = time_training(tr, args.steps, args.repeats)
    if ctx.is_root:
        print("RATES", json.dumps(rates), flush=True)
    ctx.close()


def model_dir(tmp: Path, device: str, invariance: str = "learned") -> Metric:
    model_cfg, loss_cfg = _configs(invariance)
    enc = build_encoder(model_cfg).eval()
    stats = ChannelStats(mean=np.ones(14), std=np.full(14, 0.7), count=1)
    out = tmp / f"model-{invariance}"
    write_model_dir(out, enc, stats, model_cfg, loss_cfg, TrainConfig(), "bench")
    return Metric.load(out, device=device)


def time_embedding(m: Metric, x: np.ndarray, repeats: int, cpu: list | None = None) -> list[float]:
    m.embed(x[:256])
    rates = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        m.embed(x, batch_size=4096)
        rates.append(len(x) / (time.perf_counter() - t0))
        if cpu is not None:
            cpu.append(len(x) / (time.process_time() - c0))
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="training steps per timed run")
    p.add_argument("--embed", type=int, default=8192, help="patches per embedding run")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--invariance", default="learned", help=argparse.SUPPRESS)
    p.add_argument("--models", default="learned,group",
                   help="comma-separated models to measure: learned (the paper's), group")
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    from mummi_ml.parallel import init_distributed

    res: dict = {"batch_size": BATCH, "repeats": args.repeats, "steps": args.steps,
                 "cpus": len(os.sched_getaffinity(0)), "loadavg_start": os.getloadavg()[0],
                 "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        data = make_data(tmp / "data.h5", BATCH * (args.steps + 2) + 200)
        ctx = init_distributed("cpu", 1)
        x = np.random.default_rng(1).gamma(2.0, 0.5, (args.embed, 37, 37, 14)).astype(np.float32)
        for model in args.models.split(","):
            pre = "" if model == "learned" else f"{model}_"
            tr = _trainer(data, tmp / f"run1-{model}", ctx, "cpu", model)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                cpu: list[float] = []
                res[f"{pre}train_samples_per_s_{threads}thread{'s' if threads > 1 else ''}"] = (
                    statistics.median(time_training(tr, args.steps, args.repeats, cpu))
                )
                if threads == 1:
                    res[f"{pre}train_samples_per_cpu_s_1thread"] = statistics.median(cpu)
            b = next(tr.data.batches(0))
            torch.set_num_threads(1)
            res[f"{pre}train_profile"] = profile_top(lambda tr=tr, b=b: tr.train_step(b), 10)
            # 2 ranks x 1 thread
            exe = Path(sys.executable).parent / "mpiexec"
            cmd = [str(exe if exe.exists() else "mpiexec"), "-n", "2", sys.executable, __file__,
                   "--worker", "--data", str(data), "--out", str(tmp / f"run2-{model}"),
                   "--steps", str(args.steps), "--repeats", str(args.repeats),
                   "--invariance", model]
            env = dict(os.environ, OMP_NUM_THREADS="1")
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
            rates = [json.loads(line.split("RATES ", 1)[1]) for line in proc.stdout.splitlines()
                     if line.startswith("RATES ")]
            res[f"{pre}train_samples_per_s_2ranks_1thread"] = (
                statistics.median(rates[0]) if rates else f"failed: {proc.stderr[-300:]}"
            )
            # embedding
            m = model_dir(tmp, "cpu", model)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                cpu = []
                res[f"{pre}embed_patches_per_s_{threads}thread{'s' if threads > 1 else ''}"] = (
                    statistics.median(time_embedding(m, x, args.repeats, cpu))
                )
                if threads == 1:
                    res[f"{pre}embed_patches_per_cpu_s_1thread"] = statistics.median(cpu)
            torch.set_num_threads(1)
            res[f"{pre}embed_profile"] = profile_top(lambda m=m: m.embed(x[:4096]))
        if torch.cuda.is_available():
            from mummi_ml.parallel import local_context

            gctx = local_context("cuda")  # the CPU context above would train on the CPU
            gtr = _trainer(data, tmp / "rung", gctx, "cuda")
            assert gtr.ctx.device.type == "cuda"
            gm = model_dir(tmp / "g", "cuda")
            big = np.repeat(x, max(1, 65536 // len(x)), axis=0)
            res["gpu"] = {
                "device": torch.cuda.get_device_name(0),
                "train_samples_per_s": statistics.median(time_training(gtr, args.steps,
                                                                       args.repeats)),
                "embed_patches_per_s": statistics.median(time_embedding(gm, big, args.repeats)),
            }
        else:
            res["gpu"] = "not measured: no GPU lent"
        ctx.close()
    res["loadavg_end"] = os.getloadavg()[0]
    print(f"{'figure':40s} value")
    for k, v in res.items():
        if isinstance(v, float):
            print(f"{k:40s} {v:,.1f}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
