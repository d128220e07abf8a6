"""Benchmark of the patch data layer: radial profiles and HDF5 throughput.

Prints a table and then one JSON object (the last line of stdout). Figures:

- ``profiles_per_s_1core``: radial_profiles (8 channels) patches/s in one process;
- ``profiles_per_s_2cores``: the same with two worker processes on halves of the data (wall time);
- ``h5_write_MBps`` / ``h5_read_MBps``: writing N patches with PatchWriter (gzip 1 + shuffle) and
  streaming them back with PatchFile.iter_batches, in MB of patch data (N * 37*37*14*4 bytes) per
  second. The read is from the page cache (the file was just written): it measures decompression
  and copying, which is what bounds a node reading from a parallel file system's cache.

Two kinds of data: ``smooth`` (Gaussian-filtered noise, like continuum-model fields, which
compress) and ``random`` (uniform noise: the incompressible worst case).

Usage: ``python benchmarks/bench_features.py [--patches 20000] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from mummi_ml.patch import PatchBatch, PatchFile, PatchWriter, radial_profiles


def smooth_patches(n: int, seed: int) -> np.ndarray:
    """Positive, spatially correlated patches [n, 37, 37, 14] (a few pixels' correlation length)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, 37, 37, 14)).astype(np.float32)
    smooth = gaussian_filter(noise, sigma=(0, 2.5, 2.5, 0), mode="wrap")
    return (0.1 + 0.02 * smooth).astype(np.float32)


def random_patches(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(size=(n, 37, 37, 14), dtype=np.float32)


def _profile_worker(args: tuple[int, int]) -> float:
    n, seed = args
    x = random_patches(n, seed)
    t0 = time.perf_counter()
    radial_profiles(x)
    return time.perf_counter() - t0


def bench_profiles(n: int, repeats: int) -> dict[str, float]:
    x = random_patches(n, 0)
    radial_profiles(x[:64])  # build the index tables
    one = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        radial_profiles(x)
        one.append(n / (time.perf_counter() - t0))
    two = []
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        pool.map(_profile_worker, [(64, 0), (64, 1)])  # warm up
        for r in range(repeats):
            # both workers run at once; each times only its profile computation (not the data
            # generation), so the slower one bounds the two-core throughput
            times = pool.map(_profile_worker, [(n // 2, 2 * r), (n // 2, 2 * r + 1)])
            two.append(n / max(times))
    return {
        "profiles_per_s_1core": statistics.median(one),
        "profiles_per_s_2cores": statistics.median(two),
    }


def bench_h5(x: np.ndarray, repeats: int, workdir: Path) -> dict[str, float]:
    n = len(x)
    y = np.zeros((n, 2), np.int32)
    batch = PatchBatch.from_arrays(x, y)
    mb = x.nbytes / 1e6
    writes, reads = [], []
    for r in range(repeats):
        path = workdir / f"bench{r}.h5"
        t0 = time.perf_counter()
        with PatchWriter(path) as w:
            for lo in range(0, n, 1024):
                w.append(batch.subset(slice(lo, lo + 1024)))
        writes.append(mb / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        with PatchFile(path) as f:
            total = sum(len(b) for b in f.iter_batches())
        reads.append(mb / (time.perf_counter() - t0))
        assert total == n
        size = path.stat().st_size
        path.unlink()
    return {
        "h5_write_MBps": statistics.median(writes),
        "h5_read_MBps": statistics.median(reads),
        "file_MB": size / 1e6,
        "compression_ratio": x.nbytes / size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=20000)
    parser.add_argument("--profile-patches", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    result: dict[str, object] = {
        "benchmark": "features",
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "patches": args.patches,
        "repeats": args.repeats,
    }
    result.update(bench_profiles(args.profile_patches, args.repeats))
    with tempfile.TemporaryDirectory() as tmp:
        for kind, make in (("smooth", smooth_patches), ("random", random_patches)):
            x = make(args.patches, 1)
            for key, value in bench_h5(x, max(1, args.repeats // 2), Path(tmp)).items():
                result[f"{kind}_{key}"] = value
            del x
    result["targets"] = {"profiles_per_s_1core": 10000, "h5_read_MBps": 300}

    print(f"{'figure':<32} {'value':>12}", file=sys.stderr)
    for key, value in result.items():
        if isinstance(value, float):
            print(f"{key:<32} {value:12.1f}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
