"""Time and peak memory of the three evaluation criteria at the paper's size.

Each criterion runs in a fresh subprocess (so the peak resident set size is its own), ``--repeats``
times; the JSON printed on stdout gives every run and the median. Inputs are synthetic: z [N, 9]
(a 9-D metric space), its 5 transformations, Upsilon [N, 304], 4 classes.

    python benchmarks/bench_evaluate.py --n 30000 --repeats 3 > bench_evaluate.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CRITERIA = ("overlap", "mare_fitted", "mare_given", "pr_auc")


def _inputs(n: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 9)).astype(np.float32)
    zt = (z[:, None, :] + 0.01 * rng.normal(size=(n, 5, 9))).astype(np.float32)
    u = rng.normal(size=(n, 304)).astype(np.float32)
    classes = rng.integers(0, 4, size=n)
    return z, zt, u, classes


def _child(criterion: str, n: int, seed: int, device: str | None) -> None:
    from mummi_ml.evaluate import mare, overlap, pr_auc

    z, zt, u, classes = _inputs(n, seed)
    t0 = time.perf_counter()
    if criterion == "overlap":
        value = overlap(z, zt, device=device).percent
    elif criterion == "mare_fitted":
        value = mare(z, u, device=device).mare
    elif criterion == "mare_given":
        value = mare(z, u, lam=0.1, device=device).mare
    else:
        value = pr_auc(z, classes, device=device)
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss_gib = usage.ru_maxrss / 2**20  # Linux: KiB
    cpu = usage.ru_utime + usage.ru_stime  # includes imports and input generation (~2 s)
    print(
        json.dumps(
            {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_gib": rss_gib, "value": value}
        )
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=30000, help="points (pairs = N(N-1)/2)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    p.add_argument("--criteria", default=",".join(CRITERIA))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        _child(a.child, a.n, a.seed, a.device)
        return 0
    import torch

    out = {
        "n_points": a.n,
        "n_pairs": a.n * (a.n - 1) // 2,
        "torch_threads": torch.get_num_threads(),
        "device": a.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "load_average_before": os.getloadavg(),
        "criteria": {},
    }
    for crit in a.criteria.split(","):
        runs = []
        for _ in range(a.repeats):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                crit,
                "--n",
                str(a.n),
                "--seed",
                str(a.seed),
            ]
            if a.device:
                cmd += ["--device", a.device]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        out["criteria"][crit] = {
            "median_seconds": statistics.median(r["seconds"] for r in runs),
            "median_peak_rss_gib": statistics.median(r["peak_rss_gib"] for r in runs),
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
            "value": runs[0]["value"],
            "runs": runs,
        }
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    print("criterion      wall s (median)  CPU s   peak RSS GiB", file=sys.stderr)
    for crit, r in out["criteria"].items():
        print(
            f"{crit:<14} {r['median_seconds']:>10.1f}  {r['median_cpu_seconds']:>8.1f}"
            f"  {r['median_peak_rss_gib']:>8.2f}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
