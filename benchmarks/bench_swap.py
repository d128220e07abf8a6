"""Benchmark of a hot swap of the selector's model (:mod:`mummi_ml.selector.swap`): re-read the
stored payloads of a rank's candidates and picks, re-embed them with the paper's encoder (d = 9,
default ``model:`` config, random weights: the cost does not depend on the weights), recompute
every candidate's novelty exactly, write the checkpoint with the new version. Prints JSON on
stdout (times in seconds, and extrapolated per 100,000 candidates) and a line on stderr.

    python benchmarks/bench_swap.py                    # 20,000 candidates, 1,000 picks
    python benchmarks/bench_swap.py --n 100000         # 7.7 GB of payloads on disk
    python benchmarks/bench_swap.py --n 2000 --selected 100    # seconds (smoke)

One process, torch's threads as the environment sets them (2 on the development machine).
The payloads (77 kB a patch) are written to a temporary directory first (not timed); with
``--n`` below 100,000 the per-100,000 figures are linear extrapolations (every part of a swap
is linear in the candidates, except the nearest-selected search: n log m).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mummi_ml.metric import LossConfig, Metric, ModelConfig, TrainConfig
from mummi_ml.metric.model_dir import build_encoder, write_model_dir
from mummi_ml.patch import ChannelStats, PatchBatch
from mummi_ml.selector import NearestSelected
from mummi_ml.selector.state import SelectorState, StateMeta

SEGMENT = 1024  # patches per payload segment (one ingest batch)


def _batch(rng: np.random.Generator, start: int, n: int) -> PatchBatch:
    x = rng.random((n, 37, 37, 14), dtype=np.float32)
    y = np.stack([rng.integers(0, 3, n), np.zeros(n, int)], 1).astype(np.int32)
    return PatchBatch.from_arrays(x, y, ids=np.arange(start, start + n, dtype=np.uint64))


def _model(out: Path, rng: np.random.Generator) -> Metric:
    torch.manual_seed(0)
    stats = ChannelStats.from_batches([_batch(rng, 0, 64).x])
    write_model_dir(out, build_encoder(ModelConfig()), stats, ModelConfig(), LossConfig(),
                    TrainConfig(), "bench")
    return Metric.load(out, device="cpu")


def _state(root: Path, n: int, m: int, dim: int, rng: np.random.Generator) -> SelectorState:
    """A one-rank state with ``n`` candidates and ``m`` picks, payloads on disk."""
    st = SelectorState.restore(root / "state", StateMeta(dim, 1, "old", "nearest", ("c",)))
    for lo in range(0, n + m, SEGMENT):
        b = _batch(rng, lo, min(SEGMENT, n + m - lo))
        src, seg, rows = st.payloads.put(b)
        z = rng.standard_normal((len(b), dim)).astype(np.float32)
        k = max(0, min(len(b), m - lo))  # the first m patches are the picks
        st.selected.append(z[:k], ids=b.ids[:k], src=src, seg=seg, row=rows[:k])
        st.pool.add(z[k:], np.full((len(b) - k, 1), np.inf), ids=b.ids[k:],
                    classes=np.zeros(len(b) - k, np.int8), seen=np.zeros(len(b) - k, np.int64),
                    src=np.full(len(b) - k, src, np.int32), seg=np.full(len(b) - k, seg, np.int32),
                    row=rows[k:])
    st.payloads.sync()
    return st


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="candidates in the pool")
    ap.add_argument("--selected", type=int, default=1000, help="picks (re-embedded too)")
    ap.add_argument("--batch", type=int, default=1024, help="patches per embedding batch")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-swap-") as tmp:
        root = Path(tmp)
        metric = _model(root / "model", rng)
        st = _state(root, a.n, a.selected, metric.latent_dim, rng)
        t_embed = 0.0

        def embed(x: np.ndarray) -> np.ndarray:
            nonlocal t_embed
            t = time.perf_counter()
            z = metric.embed(x, batch_size=a.batch)
            t_embed += time.perf_counter() - t
            return z

        t0 = time.perf_counter()
        new, reason = st.reembed(embed, metric.latent_dim, NearestSelected(1), a.batch)
        t_reembed = time.perf_counter() - t0
        assert new is not None, reason
        t = time.perf_counter()
        NearestSelected(1).query(new.pool_z, new.selected_z)
        t_novelty = time.perf_counter() - t
        t = time.perf_counter()
        st.switch(st.meta, new)
        st.checkpoint(keep=2)
        t_ckpt = time.perf_counter() - t
    total = t_reembed + t_ckpt
    scale = 100_000 / a.n
    out = {
        "n_candidates": a.n, "n_selected": a.selected, "latent_dim": metric.latent_dim,
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "seconds": {"total": total, "read_payloads": t_reembed - t_embed - t_novelty,
                    "embed": t_embed, "novelty": t_novelty, "switch_and_checkpoint": t_ckpt},
        "per_100k_candidates_s": {"total": total * scale, "embed": t_embed * scale},
        "extrapolated": a.n != 100_000,
        "patches_per_s": (a.n + a.selected) / t_reembed,
    }
    print(json.dumps(out, indent=1))
    if a.out:
        a.out.write_text(json.dumps(out, indent=1))
    print(f"swap of {a.n} candidates + {a.selected} picks: {total:.2f} s "
          f"(embed {t_embed:.2f} s, novelty {t_novelty:.3f} s); per 100,000 candidates "
          f"{total * scale:.1f} s{' (extrapolated)' if a.n != 100_000 else ''}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
