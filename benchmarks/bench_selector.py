"""Benchmark of the in situ selector: selection speed (lazy greedy vs the eager reference vs the
naive re-rank-everything method vs DynIm's rank-once top-k), exact nearest-selected search
backends, ingest rate per rank, memory per candidate. Prints JSON (stdout) and a table (stderr).

    python benchmarks/bench_selector.py                 # full: pools of 35,000 and 1,000,000
    python benchmarks/bench_selector.py --quick         # small sizes, seconds
    python benchmarks/bench_selector.py --lazy-only --repeats 7   # the lazy greedy alone
    python benchmarks/bench_selector.py --out bench.json

Times are medians over ``--repeats`` runs (wall clock, one process; threads as the environment
sets them: ``OMP_NUM_THREADS=1`` for one core). The full ingest figure includes the flush of the
payload segments that a checkpoint does before it is written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mummi_ml.patch import PatchBatch, find_invalid, mean_concentrations
from mummi_ml.selector import (
    CandidatePool,
    IdSet,
    LazyGreedy,
    NearestSelected,
    PayloadStore,
    SelectedSet,
    distances,
    naive_rerank_select,
    reference_select,
    topk_once_select,
)
from mummi_ml.selector.ingest import Ingestor


def _median(f, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _pool(z, ids, sel: SelectedSet) -> CandidatePool:
    n = len(z)
    pool = CandidatePool(z.shape[1], 1)
    dk = NearestSelected(1, "ckdtree").query(z, sel.z)
    pool.add(z, dk, ids=ids, classes=np.zeros(n, np.int8), seen=np.full(n, len(sel)),
             src=0, seg=0, row=np.arange(n, dtype=np.int32))
    return pool


def _min_pair(z: np.ndarray) -> float:
    d = distances(z, z)
    np.fill_diagonal(d, np.inf)
    return float(d.min())


def bench_selection(n: int, picks: int, d: int, warm: int, repeats: int, naive_picks: int,
                    rng, lazy_only: bool = False) -> dict:
    """200 picks from n candidates: lazy (cold: nothing selected yet; warm: ``warm`` earlier
    picks), eager reference, naive re-rank, DynIm top-k once."""
    z = rng.normal(size=(n, d)).astype(np.float32)
    ids = np.arange(n, dtype=np.uint64)
    prev = rng.normal(size=(warm, d)).astype(np.float32)
    out: dict = {"n": n, "picks": picks, "dim": d, "warm_selected": warm}
    for mode in ("cold", "warm"):
        def run(mode=mode):
            sel = SelectedSet(d)
            if mode == "warm":
                sel.append(prev, ids=np.arange(warm, dtype=np.uint64) + 10**12)
            pool = _pool(z, ids, sel)
            eng = LazyGreedy(pool, sel, frontier_size=1024)
            t = time.perf_counter()
            got = eng.select(picks)
            return time.perf_counter() - t, [p.id for p in got], eng.stats
        runs = [run() for _ in range(repeats)]
        out[f"lazy_{mode}_s"] = statistics.median(r[0] for r in runs)
        out[f"lazy_{mode}_distances"] = runs[0][2]["distances"]
        out[f"lazy_{mode}_lowered"] = runs[0][2]["lowered"]
        out[f"_lazy_{mode}_ids"] = runs[0][1]
        out[f"lazy_{mode}_range_s"] = [min(r[0] for r in runs), max(r[0] for r in runs)]
    if lazy_only:
        out.pop("_lazy_warm_ids"), out.pop("_lazy_cold_ids")
        return out
    t_ref, (pos, _) = _median(lambda: reference_select(z, ids, picks, selected_z=prev), 1)
    out["reference_eager_warm_s"] = t_ref
    out["lazy_equals_reference"] = out.pop("_lazy_warm_ids") == ids[pos].tolist()
    t_ref_cold, (pos_cold, _) = _median(lambda: reference_select(z, ids, picks), 1)
    out["reference_eager_cold_s"] = t_ref_cold
    out["lazy_cold_equals_reference"] = out.pop("_lazy_cold_ids") == ids[pos_cold].tolist()
    k = min(picks, naive_picks)
    t_naive, _ = _median(lambda: naive_rerank_select(z, ids, k, selected_z=prev), 1)
    out["naive_rerank_warm_s"] = t_naive * picks / k
    out["naive_rerank_measured_picks"] = k
    t_topk, top = _median(lambda: topk_once_select(z, prev, picks), 1)
    out["dynim_topk_once_s"] = t_topk
    out["min_pair_distance_greedy"] = _min_pair(z[pos])
    out["min_pair_distance_dynim_topk"] = _min_pair(z[top])
    return out


def bench_nn(n_points: int, n_queries: int, d: int, repeats: int, rng) -> dict:
    s = rng.normal(size=(n_points, d)).astype(np.float32)
    q = rng.normal(size=(n_queries, d)).astype(np.float32)
    out = {"points": n_points, "queries": n_queries, "dim": d}
    for backend in ("ckdtree", "faiss", "torch"):
        def run(backend=backend):
            nn = NearestSelected(1, backend, brute_max=0)
            return nn.query(q, s)
        out[f"{backend}_s"] = _median(run, repeats)[0]
    out["fastest"] = min(("ckdtree", "faiss", "torch"), key=lambda b: out[f"{b}_s"])
    return out


def _untrained_metric(tmp: Path):
    """A randomly initialised metric of the paper's architecture (speed does not depend on the
    weights)."""
    from mummi_ml.metric import Metric, build_encoder, write_model_dir
    from mummi_ml.metric.config import LossConfig, ModelConfig, TrainConfig
    from mummi_ml.patch import ChannelStats

    rng = np.random.default_rng(0)
    stats = ChannelStats.from_batches([rng.random((16, 37, 37, 14), dtype=np.float32)])
    mc = ModelConfig()
    write_model_dir(tmp, build_encoder(mc), stats, mc, LossConfig(), TrainConfig(), "bench")
    return Metric.load(tmp, device=None)


def bench_ingest(n: int, batch: int, selected: int, repeats: int, rng, embedders) -> dict:
    x = rng.random((n, 37, 37, 14), dtype=np.float32)
    y = np.zeros((n, 2), np.int32)
    out: dict = {"patches": n, "batch": batch, "selected": selected}
    for name, (embed, dim) in embedders.items():
        sel = SelectedSet(dim)
        sel.append(rng.normal(size=(selected, dim)).astype(np.float32),
                   ids=np.arange(selected, dtype=np.uint64) + 10**12)
        nn = NearestSelected(1, "auto")

        def core(embed=embed, sel=sel, nn=nn):  # validation + embedding + novelty
            for lo in range(0, n, batch):
                xb = x[lo : lo + batch]
                find_invalid(xb, y[lo : lo + batch])
                nn.query(np.asarray(embed(xb), np.float32), sel.z)

        out[f"{name}_core_patches_per_s"] = n / _median(core, repeats)[0]

        def full(embed=embed, dim=dim, sel=sel):  # + dedup, payload segments, pool
            # timed: ingest, then the fsync of every segment that a checkpoint does before it is
            # written (payloads on stable storage); not timed: deleting the segments afterwards
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                pool = CandidatePool(dim, 1)
                eng = LazyGreedy(pool, sel)
                store = PayloadStore(tmp, 0)
                ing = Ingestor(embed, eng, store, IdSet(), NearestSelected(1),
                               capacity=10**9, embed_batch_size=batch)
                for lo in range(0, n, batch):
                    b = PatchBatch.from_arrays(x[lo : lo + batch], y[lo : lo + batch],
                                               ids=np.arange(lo, lo + batch, dtype=np.uint64))
                    ing.step([(b, "bench")])
                store.sync()
                return time.perf_counter() - t

        times = [full() for _ in range(repeats)]
        out[f"{name}_full_patches_per_s"] = n / statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--no-model", action="store_true", help="skip the torch metric in ingest")
    ap.add_argument("--lazy-only", action="store_true",
                    help="only the lazy greedy's cold and warm selection (seconds, not minutes)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats: expected >= 1, got {args.repeats}")
    rng = np.random.default_rng(0)
    sizes = [2000, 20000] if args.quick else [35000, 1_000_000]
    res: dict = {
        "benchmark": "selector",
        "host": platform.node(), "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
        "python": sys.version.split()[0], "repeats": args.repeats,
        "gpu": "not measured: no GPU lent" if not _has_cuda() else "cuda present",
    }
    res["selection"] = [bench_selection(n, 200, 9, 1000, args.repeats,
                                        200 if n <= 35000 else 10, rng, args.lazy_only)
                        for n in sizes]
    if args.lazy_only:
        print(json.dumps(res, indent=1))
        for s in res["selection"]:
            sys.stderr.write(f"{s['n']:>9}: lazy cold {s['lazy_cold_s']:.3f} s "
                             f"({s['lazy_cold_range_s'][0]:.3f}-{s['lazy_cold_range_s'][1]:.3f}), "
                             f"warm {s['lazy_warm_s']:.3f} s, median of {args.repeats}\n")
        return 0
    res["nn_search"] = bench_nn(10**4 if args.quick else 10**5, 10**4, 9, args.repeats, rng)
    embedders = {"mean_concentrations": (mean_concentrations, 14)}
    if not args.no_model:
        with tempfile.TemporaryDirectory() as tmp:
            m = _untrained_metric(Path(tmp))
            embedders["metric"] = (m.embed, m.latent_dim)
            res["metric_device"] = str(m.device)
    res["ingest"] = bench_ingest(2048 if args.quick else 10240, 1024, 1000, args.repeats, rng,
                                 embedders)
    pool = CandidatePool(9, 1)
    res["memory"] = {"bytes_per_candidate_pool": pool.bytes_per_candidate,
                     "bytes_per_candidate_id_set": 8,
                     "bytes_per_candidate_mean_knn10": CandidatePool(9, 10).bytes_per_candidate}
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    _table(res)
    return 0


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _table(res: dict) -> None:
    w = sys.stderr.write
    w(f"\nselection, 200 picks, d=9 (median of {res['repeats']}; load {res['load_avg'][0]:.1f})\n")
    w(f"{'pool':>9} {'lazy cold':>10} {'lazy warm':>10} {'eager ref':>10} {'naive':>10} "
      f"{'topk-once':>10}  equal  minpair greedy/topk\n")
    for s in res["selection"]:
        w(f"{s['n']:>9} {s['lazy_cold_s']:>9.3f}s {s['lazy_warm_s']:>9.3f}s "
          f"{s['reference_eager_warm_s']:>9.3f}s {s['naive_rerank_warm_s']:>9.2f}s "
          f"{s['dynim_topk_once_s']:>9.3f}s  "
          f"{s['lazy_cold_equals_reference'] and s['lazy_equals_reference']!s:>5}  "
          f"{s['min_pair_distance_greedy']:.3f}/{s['min_pair_distance_dynim_topk']:.3f}\n")
    nn = res["nn_search"]
    w(f"\nnearest selected, {nn['queries']} queries vs {nn['points']} points, d=9: "
      f"ckdtree {nn['ckdtree_s']:.3f}s, faiss {nn['faiss_s']:.3f}s, torch {nn['torch_s']:.3f}s"
      f" -> {nn['fastest']}\n")
    ing = res["ingest"]
    w("\ningest per rank (patches/s): " + ", ".join(
        f"{k.replace('_patches_per_s', '')} {v:.0f}" for k, v in ing.items()
        if k.endswith("per_s")) + "\n")
    w(f"memory per candidate: {res['memory']['bytes_per_candidate_pool']} B in the pool + 8 B "
      "id set\n")


if __name__ == "__main__":
    raise SystemExit(main())
