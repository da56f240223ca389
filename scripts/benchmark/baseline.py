"""A build measured against the same build by another revision of this repository, in the same run.

`scripts/bench.py --baseline-rev REV` exports REV's tree with `git archive` into the work directory
(once per commit) and runs its own `scripts/build.py`, with its own `arr_coc` package, on the same mirror
as the checked-out code's, with the same interpreter and flags. The two alternate, REPEATS builds each,
in the order new, baseline, baseline, new, new, ... so that the machine's drift over the run falls on
both alike; wall and CPU time are compared as the median of the paired ratios (each new build over the
baseline build next to it) and as the ratio of the medians. An issue that may cost some time states its
limit (`--baseline-max-ratio`: 1.05 for issue 20's answer agreement, 1.1 for issue 22's perceptual hash).
"""

import io
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from typing import Callable, Optional

from benchmark.measure import REPO_ROOT, logger, median, table

DONE_MARKER = ".exported"


@dataclass(frozen=True)
class Revision:
    rev: str  # as given on the command line
    commit: str
    root: str  # the exported tree


def export_revision(rev: str, work_dir: str) -> Revision:
    """REV's committed tree (without data/) in WORK_DIR/baseline-<commit>, reused when already there."""
    try:
        commit = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except subprocess.CalledProcessError:
        raise ValueError(f"--baseline-rev {rev!r}: not a commit of the repository at {REPO_ROOT}") from None
    root = os.path.join(work_dir, f"baseline-{commit[:12]}")
    if os.path.exists(os.path.join(root, DONE_MARKER)):
        return Revision(rev, commit, root)
    shutil.rmtree(root, ignore_errors=True)
    archive = _git("archive", "--format=tar", commit, "--", ".", ":(exclude)data")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    with open(os.path.join(root, DONE_MARKER), "w") as handle:
        handle.write(commit + "\n")
    return Revision(rev, commit, root)


def _git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", REPO_ROOT, *args], check=True, capture_output=True).stdout


@dataclass
class Comparison:
    """REPEATS builds of one workload and num_proc by the checked-out code and by the baseline revision."""

    workload: str
    num_proc: int
    revision: Revision
    new: list  # bench.BuildFigures, in the order measured
    baseline: list

    def paired(self, figure: Callable) -> float:
        return median([figure(new.run) / figure(base.run) for new, base in zip(self.new, self.baseline)])

    def medians(self, figure: Callable) -> tuple[float, float]:
        return median([figure(b.run) for b in self.new]), median([figure(b.run) for b in self.baseline])


def wall(run) -> float:
    return run.wall_s


def cpu(run) -> float:
    return run.cpu_s


def compare_builds(measure_build: Callable, revision: Revision, repeats: int, workload: str, num_proc: int) -> Comparison:
    """`measure_build(build_script, tag)` builds once with that scripts/build.py and returns its figures."""
    new_script = os.path.join(REPO_ROOT, "scripts", "build.py")
    base_script = os.path.join(revision.root, "scripts", "build.py")
    comparison = Comparison(workload, num_proc, revision, [], [])
    for repeat in range(repeats):
        sides = [("new", new_script, comparison.new), ("baseline", base_script, comparison.baseline)]
        for tag, script, runs in sides if repeat % 2 == 0 else sides[::-1]:
            runs.append(measure_build(script, tag))
    # Said at once: a long run that fails later still leaves this figure in its log.
    logger.info("%s num_proc %d against %s: wall x%.3f, CPU x%.3f (medians of %d paired ratios)", workload, num_proc,
                revision.rev, comparison.paired(wall), comparison.paired(cpu), repeats)
    return comparison


def comparison_report(comparisons: list) -> list[str]:
    if not comparisons:
        return []
    first = comparisons[0]
    out = [f"\nBuild against revision {first.revision.rev} ({first.revision.commit[:12]}): the same mirror and flags, "
           f"{len(first.new)} builds each, alternating"]
    rows = []
    for c in comparisons:
        (new_wall, base_wall), (new_cpu, base_cpu) = c.medians(wall), c.medians(cpu)
        rows.append([c.workload, c.num_proc, c.new[0].rows, c.baseline[0].rows, new_wall, base_wall, c.paired(wall),
                     new_wall / base_wall, new_cpu, base_cpu, c.paired(cpu), new_cpu / base_cpu])
    out.append(table(["workload", "num_proc", "rows", "rows (base)", "wall s", "wall s (base)", "wall ratio", "(of medians)",
                      "CPU s", "CPU s (base)", "CPU ratio", "(of medians)"], rows))
    out.append("  seconds: medians; ratio: the median of each build over the baseline build next to it.")
    for c in comparisons:
        out.append(f"  {c.workload} num_proc {c.num_proc} wall s, new: "
                   f"{', '.join(f'{b.run.wall_s:.2f}' for b in c.new)}; base: {', '.join(f'{b.run.wall_s:.2f}' for b in c.baseline)}")
    return out


def comparison_targets(comparisons: list, max_ratio: Optional[float], add: Callable) -> None:
    if max_ratio is None:
        return
    for c in comparisons:
        for name, figure in (("wall", wall), ("CPU", cpu)):
            ratio = c.paired(figure)
            add(f"build {name} time / revision {c.revision.rev} (num_proc {c.num_proc})", c.workload, ratio, max_ratio,
                ratio <= max_ratio)


def comparison_json(c: Comparison, figures: Callable) -> dict:
    return {
        "workload": c.workload,
        "num_proc": c.num_proc,
        "rev": c.revision.rev,
        "commit": c.revision.commit,
        "new": [figures(b) for b in c.new],
        "baseline": [figures(b) for b in c.baseline],
        "wall_ratio": c.paired(wall),
        "cpu_ratio": c.paired(cpu),
        "wall_ratio_of_medians": c.medians(wall)[0] / c.medians(wall)[1],
        "cpu_ratio_of_medians": c.medians(cpu)[0] / c.medians(cpu)[1],
    }
