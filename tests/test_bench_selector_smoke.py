"""The selector benchmark runs and prints the JSON its docs quote (a smoke run, small sizes)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_bench_selector_lazy_only_quick_prints_cold_and_warm_figures():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/bench_selector.py"), "--quick", "--lazy-only",
         "--repeats", "1"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    res = json.loads(proc.stdout)
    assert [s["n"] for s in res["selection"]] == [2000, 20000]
    for s in res["selection"]:
        assert s["lazy_cold_s"] > 0 and s["lazy_warm_s"] > 0
        assert s["lazy_cold_distances"] > 0 and s["lazy_warm_distances"] > 0
    assert "lazy cold" in proc.stderr
