"""scripts/bench.py --quick: every measurement path runs and prints its figures.

A smoke test only: the figures of a quick run on a shared CI machine mean nothing, so no timing or
memory figure is compared with anything; the test checks that each one was measured.
"""

import json
import os
import subprocess
import sys

from helpers import ROOT

BENCH = os.path.join(ROOT, "scripts", "bench.py")
TABLES = ("Workloads", "Build:", "Build memory", "Baselines", "Build against the baselines", "Streaming", "DataLoader workers", "Targets")


def measured(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_quick_benchmark_runs_and_prints_every_table(tmp_path):
    figures_path = tmp_path / "figures.json"
    command = [sys.executable, BENCH, "--quick", "--work-dir", str(tmp_path / "work"), "--json", str(figures_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for title in TABLES:
        assert title in result.stdout, title

    figures = json.loads(figures_path.read_text())
    assert figures["quick"] is True
    assert [workload["workload"]["name"] for workload in figures["workloads"]] == ["gqa", "coco"]
    for workload in figures["workloads"]:
        builds = workload["builds"]
        assert sorted(build["num_proc"] for build in builds) == [1, 2]
        assert len({build["rows"] for build in builds}) == 1  # the same rows whatever num_proc is
        for build in builds:
            assert build["rows"] > 0 and build["image_mb"] > 0
            for name in ("wall_s", "cpu_s", "peak_rss_mb", "peak_process_mb", "peak_process_anon_mb"):
                assert measured(build["run"][name]), name
        assert workload["json_load"]["result"]["bytes"] > 0 and measured(workload["json_load"]["peak_process_mb"])
        assert workload["passthrough"]["result"]["rows"] > 0 and measured(workload["passthrough"]["wall_s"])
        streamed = {mode: run["result"]["rows"] for mode, run in workload["streaming"].items()}
        assert set(streamed) == {"decoded", "raw", "arrow"} and len(set(streamed.values())) == 1
        assert all(measured(first) for firsts in workload["first_row_s"].values() for first in firsts)
    # The card's recipes, each through 2 DataLoader workers, with every worker's own peak RSS.
    [coco] = [workload for workload in figures["workloads"] if workload["workload"]["name"] == "coco"]
    assert [(run["recipe"], run["buffer_size"]) for run in coco["loader"]] == [("stream", 128), ("ddp", 256), ("mixture", 256)]
    for run in coco["loader"]:
        assert sorted(run["worker_peak_rss_mb"]) == ["0", "1"] and all(map(measured, run["worker_peak_rss_mb"].values()))
        assert run["rows"] > 0 and measured(run["rows_per_s"]) and measured(run["first_batch_s"]) and measured(run["parent_rss_mb"])
        assert -1 <= run["rank_correlation"] <= 1
    assert figures["targets"] and all(isinstance(target["met"], bool) for target in figures["targets"])


def test_benchmark_data_never_goes_into_the_repository():
    result = subprocess.run(
        [sys.executable, BENCH, "--quick", "--work-dir", os.path.join(ROOT, "data", "bench")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "outside the repository" in result.stderr
    assert not os.path.exists(os.path.join(ROOT, "data", "bench"))
