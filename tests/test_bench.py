"""scripts/bench.py --quick: every measurement path runs and prints its figures.

A smoke test only: the figures of a quick run on a shared CI machine mean nothing, so no timing or
memory figure is compared with anything; the test checks that each one was measured.
"""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

BENCH = os.path.join(ROOT, "scripts", "bench.py")
TABLES = ("Workloads", "Build:", "Build memory", "Baselines", "Build against the baselines", "Streaming", "DataLoader workers",
          "Time to the first row", "Shuffle quality", "Near duplicates", "Targets")


def measured(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_quick_benchmark_runs_and_prints_every_table(tmp_path):
    figures_path = tmp_path / "figures.json"
    command = [sys.executable, BENCH, "--quick", "--work-dir", str(tmp_path / "work"), "--json", str(figures_path),
               "--workloads", "gqa,coco"]  # the lengths part has a test of its own, below
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
    # The card's recipes, each through 2 DataLoader workers, with every worker's own peak RSS, against
    # today's recipe on the layout issue 13 found (8 shards of one row group).
    [coco] = [workload for workload in figures["workloads"] if workload["workload"]["name"] == "coco"]
    streams = coco["streams"]
    assert [(run["recipe"], run["buffer_size"], run["layout"]) for run in streams["loader"]] == [
        ("shuffled", 1000, "as filed"), ("stream", 64, "as built"), ("ddp", 64, "as built"), ("mixture", 64, "as built")]
    baseline, recommended = streams["loader"][0], streams["loader"][1]
    assert baseline["num_shards"] == 8 and baseline["row_groups_per_file"] == 1
    assert recommended["num_shards"] > baseline["num_shards"]  # reshard(): one shard per row group
    for run in streams["loader"]:
        assert sorted(run["worker_peak_rss_mb"]) == ["0", "1"] and all(map(measured, run["worker_peak_rss_mb"].values()))
        assert run["rows"] > 0 and measured(run["rows_per_s"]) and measured(run["rows_per_cpu_s"])
        assert measured(run["first_batch_s"]) and measured(run["parent_rss_mb"])
        assert -1 <= run["rank_correlation"] <= 1
    assert len({run["rows"] for run in streams["loader"] if run["recipe"] != "mixture"}) == 1  # every row, every recipe
    assert [(run["recipe"], run["layout"]) for run in streams["first_row"]] == [
        ("shuffled", "as filed"), ("stream", "as built"), ("ddp", "as built"), ("mixture", "as built")]
    assert all(run["seconds"] and all(map(measured, run["seconds"])) for run in streams["first_row"])
    assert [(run["recipe"], run["seeds"]) for run in streams["quality"]] == [("shuffled", 2), ("stream", 2)]
    for run in streams["quality"]:
        assert len(run["rank_correlations"]) == 2 and all(-1 <= c <= 1 for c in run["rank_correlations"])
    assert run["rank_correlations"][0] != run["rank_correlations"][1]  # each seed is its own order
    # The near-duplicate audit and the card's decontamination snippet (at quick sizes here).
    near = coco["near_duplicates"]
    assert near["scan"]["pairs"] >= near["scan"]["planted"] > 0 and measured(near["scan"]["audit_s"])
    assert near["snippet"]["kept"] < near["snippet"]["rows"] and near["snippet"]["stream_kept"] < near["snippet"]["stream_rows"]
    targets = {target["target"] for target in figures["targets"]}
    assert {"stream snippet: peak RSS per worker, MB", "stream snippet: time to first row, s (median)"} <= targets
    assert figures["targets"] and all(isinstance(target["met"], bool) for target in figures["targets"])


def test_benchmark_data_never_goes_into_the_repository():
    result = subprocess.run(
        [sys.executable, BENCH, "--quick", "--work-dir", os.path.join(ROOT, "data", "bench")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "outside the repository" in result.stderr
    assert not os.path.exists(os.path.join(ROOT, "data", "bench"))


def test_quick_lengths_part_runs_alone_and_agrees_with_the_processor(tmp_path):
    """`--workloads lengths`: only the sequence-lengths part, its figures measured, every row's length the same by
    both paths (the benchmark's own check), and its target reported."""
    figures_path = tmp_path / "figures.json"
    command = [sys.executable, BENCH, "--quick", "--workloads", "lengths", "--work-dir", str(tmp_path / "work"),
               "--json", str(figures_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Sequence lengths" in result.stdout and "Lengths per source" in result.stdout and "Build:" not in result.stdout
    figures = json.loads(figures_path.read_text())
    assert figures["workloads"] == [] and figures["startup"] is None
    lengths = figures["lengths"]
    assert lengths["rows"] > 0 and lengths["mismatches"] == 0
    for name in ("with_lengths_rows_per_s", "streamed_rows_per_s", "processor_rows_per_s"):
        assert measured(lengths[name]), name
    for per_source in (lengths["by_source"], lengths["per_source"]):
        assert list(per_source) == ["vqav2", "gqa", "okvqa", "coco"]
        assert sum(entry["rows"] for entry in per_source.values()) == lengths["rows"]
    assert all(measured(entry["with_lengths_rows_per_s"]) and measured(entry["processor_rows_per_s"])
               for entry in lengths["by_source"].values())
    assert {target["target"] for target in figures["targets"]} == {
        "with_lengths rows/s / processor rows/s (same rows)", "rows whose with_lengths differs from the processor"}


def test_build_against_a_baseline_revision(tmp_path):
    """--baseline-rev: the committed HEAD exported and built on the same mirror, alternating with the
    checked-out code (issue 20's 1.05x and issue 22's 1.1x are measured so); --build-only skips the rest."""
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout: no revision to compare with")
    figures_path = tmp_path / "figures.json"
    command = [sys.executable, BENCH, "--quick", "--build-only", "--workloads", "coco", "--num-proc", "1", "--coco-images", "6",
               "--okvqa-images", "3", "--baseline-rev", "HEAD", "--repeats", "2", "--baseline-max-ratio", "100",
               "--work-dir", str(tmp_path / "work"), "--json", str(figures_path)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Build against revision HEAD" in result.stdout and "Streaming" not in result.stdout
    [workload] = json.loads(figures_path.read_text())["workloads"]
    assert workload["passthrough"] is None and workload["streaming"] == {}
    [comparison] = workload["comparisons"]
    assert comparison["commit"] == head.stdout.strip() and comparison["rev"] == "HEAD"
    assert len(comparison["new"]) == len(comparison["baseline"]) == 2
    rows = {build["rows"] for build in comparison["new"] + comparison["baseline"]}
    assert len(rows) == 1 and rows.pop() > 0  # the same mirror, the same rows
    assert measured(comparison["wall_ratio"]) and measured(comparison["cpu_ratio"])
    targets = {target["target"]: target for target in json.loads(figures_path.read_text())["targets"]}
    assert targets["build wall time / revision HEAD (num_proc 1)"]["limit"] == 100
    assert not list((tmp_path / "work").glob("baseline-*"))  # the export goes with the builds (no --keep)

    bad = subprocess.run([sys.executable, BENCH, "--quick", "--baseline-rev", "no-such-revision", "--work-dir", str(tmp_path / "bad")],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: --baseline-rev 'no-such-revision': not a commit of the repository at {ROOT}"]
