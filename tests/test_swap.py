"""A rebuild replaces data/<config>/ and README.md together or not at all, whatever interrupts it.

Every test compares whole repository trees (tests/helpers.tree_digest): after an interrupted or
killed build the tree is byte-identical to the previous build or to the complete new one, never a mix.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import build
import datasets
import pytest
from helpers import ROOT, SPLITS, to_older_layout, tree_digest

from arr_coc.publish import staging, swap

BUILD = os.path.join(ROOT, "scripts", "build.py")
CONFIG = "small"


@pytest.fixture(scope="module")
def old_and_new(mirror, tmp_path_factory):
    """A repository holding an earlier build, and the same repository after a complete rebuild."""
    old = tmp_path_factory.mktemp("old-repo")
    args = ["--config", CONFIG, "--data-dir", str(mirror), "--output-dir"]
    assert build.main(args + [str(old), "--max-images-train", "3", "--num-shards", "2"]) == 0
    readme = old / "README.md"
    readme.write_text(readme.read_text() + "\nProse the build must keep.\n")
    new = tmp_path_factory.mktemp("new-repo")
    shutil.copytree(old, new, dirs_exist_ok=True)
    assert build.main(args + [str(new)]) == 0
    assert tree_digest(old) != tree_digest(new)
    return old, new


@pytest.fixture(scope="module", params=["same layout", "older layout"])
def before_and_after(request, old_and_new, tmp_path_factory):
    """`old_and_new`, and the same with the earlier build's shards in the layout before the interleaved
    order (`<split>-<source>-NNNNN-of-NNNNN.parquet`): a rebuild must replace those as one step too,
    and leave none of them for the `{split}-*` globs beside the new shards."""
    old, new = old_and_new
    if request.param == "same layout":
        return old, new
    older = tmp_path_factory.mktemp("older-layout-repo")
    shutil.copytree(old, older, dirs_exist_ok=True)
    assert to_older_layout(older, CONFIG)
    return older, new


def staged_copy(old, new, where):
    """A copy of the old repository with the new build staged in it, as build.py leaves it before the swap."""
    repo = where / "repo"
    shutil.copytree(old, repo)
    stage = repo / staging.STAGING_DIR / "small-test"
    shutil.copytree(new / "data" / CONFIG, stage / "data" / CONFIG)
    shutil.copyfile(new / "README.md", stage / "README.md")
    return repo, stage


class Injected(BaseException):
    """Stands for KeyboardInterrupt, SIGTERM, or SIGKILL where no rollback runs."""


def fail_at_step(monkeypatch, step, exception=KeyboardInterrupt):
    """Make the step-th file-system change (rename, replace, remove, copy) raise, once."""
    calls = {"count": 0}

    def wrap(function):
        def wrapper(*args, **kwargs):
            calls["count"] += 1
            if calls["count"] == step:
                raise exception(f"injected at step {step}")
            return function(*args, **kwargs)

        return wrapper

    for module, name in ((os, "rename"), (os, "replace"), (os, "remove"), (shutil, "copyfile")):
        monkeypatch.setattr(module, name, wrap(getattr(module, name)))
    return calls


def test_interrupt_at_every_step_of_the_swap_leaves_the_old_build(before_and_after, tmp_path, monkeypatch):
    old, new = before_and_after
    old_digest, new_digest = tree_digest(old), tree_digest(new)
    step, outcomes = 0, []
    while True:
        step += 1
        repo, stage = staged_copy(old, new, tmp_path / f"k{step}")
        with monkeypatch.context() as patch:
            calls = fail_at_step(patch, step)
            try:
                swap.swap_in(str(repo), CONFIG, str(stage))
                interrupted = False
            except KeyboardInterrupt:
                interrupted = True
        digest = tree_digest(repo)
        if interrupted and digest == new_digest:  # only once the swap is complete: clearing its journal
            assert swap.pending(str(stage)) and swap.recover(str(repo), str(stage)) == "forward"
            assert tree_digest(repo) == new_digest
        else:
            assert digest == (old_digest if interrupted else new_digest), f"step {step}"
        assert not swap.pending(str(stage))
        outcomes.append("old" if digest == old_digest else "new")
        if calls["count"] < step:  # the swap made fewer changes than `step`: every step has been tried
            break
    # copy README, journal, move old data out, new in, README: each cut short leaves the old build
    assert outcomes[:6] == ["old"] * 6 and outcomes[-1] == "new"


def test_killed_at_every_step_of_the_swap_or_its_rollback_is_recovered(before_and_after, tmp_path, monkeypatch):
    """SIGKILL runs no rollback: the journal lets the next build finish the swap one way or the other."""
    old, new = before_and_after
    old_digest, new_digest = tree_digest(old), tree_digest(new)
    cases = [(step, None) for step in range(1, 9)] + [(2, step) for step in range(3, 12)] + [(4, step) for step in range(5, 12)]
    directions = set()
    for first, second in cases:
        repo, stage = staged_copy(old, new, tmp_path / f"k{first}-{second}")
        with monkeypatch.context() as patch:
            if second is None:  # killed in the swap: no rollback at all
                patch.setattr(swap, "roll_back", lambda repo, staging: None)
                fail_at_step(patch, first, Injected)
            else:  # interrupted, then killed during the rollback
                calls = {"count": 0}
                real = {name: getattr(os, name) for name in ("rename", "replace", "remove")}

                def flaky(name):
                    def wrapper(*args, **kwargs):
                        calls["count"] += 1
                        if calls["count"] == first:
                            raise KeyboardInterrupt
                        if calls["count"] == second:
                            raise Injected
                        return real[name](*args, **kwargs)

                    return wrapper

                for name in real:
                    patch.setattr(os, name, flaky(name))
            try:
                swap.swap_in(str(repo), CONFIG, str(stage))
            except (Injected, KeyboardInterrupt):
                pass
        direction = swap.recover(str(repo), str(stage))
        directions.add(direction)
        digest = tree_digest(repo)
        assert digest in (old_digest, new_digest), (first, second)
        if direction == "back":
            assert digest == old_digest, (first, second)
        assert not swap.pending(str(stage))
    assert {"back", "forward"} <= directions


def test_interrupted_or_failed_swap_in_a_real_build_exits_non_zero_and_changes_nothing(before_and_after, mirror, tmp_path, monkeypatch, capsys):
    old, _ = before_and_after
    repo = tmp_path / "repo"
    shutil.copytree(old, repo)
    before = tree_digest(repo)
    real_replace = os.replace
    for exception, status in ((KeyboardInterrupt, 130), (OSError, 1)):

        def replace(src, dst, exception=exception):
            if os.path.abspath(dst) == os.path.join(str(repo), "README.md") and "build-staging" in str(src) and not str(src).endswith(swap.OLD_README):
                raise exception("injected while replacing README.md")
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
        assert build.main(["--config", CONFIG, "--data-dir", str(mirror), "--output-dir", str(repo)]) == status
        monkeypatch.setattr(os, "replace", real_replace)
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1
        if status == 130:
            assert errors[0] == "error: interrupted (SIGINT); the previous shards and README are untouched"
        assert tree_digest(repo) == before
        assert not os.path.exists(repo / staging.STAGING_DIR)


def test_sigterm_at_random_moments_leaves_the_old_or_the_new_build(old_and_new, mirror, tmp_path):
    old, new = old_and_new
    old_digest, new_digest = tree_digest(old), tree_digest(new)
    command = [sys.executable, BUILD, "--config", CONFIG, "--data-dir", str(mirror)]
    rng = random.Random(9)
    codes = []
    for run, delay in enumerate([0.0, rng.uniform(0.0, 2.5), rng.uniform(0.0, 2.5)]):
        repo = tmp_path / f"run{run}"
        shutil.copytree(old, repo)
        process = subprocess.Popen(command + ["--output-dir", str(repo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(repo / staging.STAGING_DIR):  # the build has begun: its handlers are installed
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
        digest = tree_digest(repo)
        assert process.returncode in (0, 143), err
        assert "Traceback" not in err
        if process.returncode == 143:
            assert err.strip().splitlines()[-1].startswith("error: interrupted (SIGTERM)")
        assert digest in (old_digest, new_digest)
        codes.append(process.returncode)
        loaded = datasets.load_dataset(str(repo), CONFIG)
        infos = datasets.get_dataset_infos(str(repo))[CONFIG]
        assert {split: len(loaded[split]) for split in SPLITS} == {split: infos.splits[split].num_examples for split in SPLITS}
        left = os.listdir(repo / staging.STAGING_DIR) if os.path.exists(repo / staging.STAGING_DIR) else None
        assert left is None, (process.returncode, left, err[-500:])
    assert codes[0] == 143, codes  # stopped mid-build; the others depend on timing, both outcomes are right


# build.py run as `python build.py ARGS` would, with a SIGTERM to itself at interpreter shutdown: after
# main() returned and printed its summary (atexit runs the handler registered first last).
SIGTERM_AT_SHUTDOWN = """
import atexit, os, runpy, signal, sys
atexit.register(os.kill, os.getpid(), signal.SIGTERM)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_sigterm_once_the_build_is_complete_and_reported_does_not_turn_it_into_a_failure(old_and_new, mirror, tmp_path):
    # Python puts the default signal actions back while it shuts down: a SIGTERM there used to end a
    # finished build with a bare -15 (no line), after "built ..." was printed and the new build was in.
    old, new = old_and_new
    repo = tmp_path / "repo"
    shutil.copytree(old, repo)
    command = [BUILD, "--config", CONFIG, "--data-dir", str(mirror), "--output-dir", str(repo)]
    result = subprocess.run([sys.executable, "-c", SIGTERM_AT_SHUTDOWN] + command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"built {CONFIG} into ")
    assert "Traceback" not in result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert tree_digest(repo) == tree_digest(new)


# The same, with the SIGTERM sent in the middle of the swap, where it is held back until the swap is done.
SIGTERM_IN_SWAP = """
import os, runpy, signal, sys
sys.path.insert(0, {root!r})
from arr_coc.publish import swap
apply = swap._apply
def apply_then_sigterm(*args):
    apply(*args)
    os.kill(os.getpid(), signal.SIGTERM)
swap._apply = apply_then_sigterm
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_sigterm_held_back_by_the_swap_says_the_build_is_complete(old_and_new, mirror, tmp_path):
    old, new = old_and_new
    repo = tmp_path / "repo"
    shutil.copytree(old, repo)
    command = [BUILD, "--config", CONFIG, "--data-dir", str(mirror), "--output-dir", str(repo)]
    child = SIGTERM_IN_SWAP.format(root=ROOT)
    result = subprocess.run([sys.executable, "-c", child] + command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 143, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        "error: interrupted (SIGTERM) after the new shards and README were swapped in; the build is complete"
    ]
    assert tree_digest(repo) == tree_digest(new)
    assert not os.path.exists(repo / staging.STAGING_DIR)


KILLED_IN_SWAP = textwrap.dedent(
    """
    import os, signal, sys
    sys.path[:0] = [{root!r}, os.path.join({root!r}, "scripts")]
    import build
    from arr_coc.publish import swap

    def dying_apply(repo, config, staging):
        target = os.path.join(repo, "data", config)
        os.rename(target, os.path.join(staging, swap.OLD_DATA))
        os.rename(os.path.join(staging, "data", config), target)
        os.kill(os.getpid(), signal.SIGKILL)  # new shards in place, README not yet replaced

    swap._apply = dying_apply
    build.main(["--config", {config!r}, "--data-dir", {mirror!r}, "--output-dir", {repo!r}])
    """
)


def test_a_build_killed_in_its_swap_is_rolled_back_by_the_next_build(before_and_after, mirror, tmp_path):
    old, new = before_and_after
    repo = tmp_path / "repo"
    shutil.copytree(old, repo)
    before = tree_digest(repo)
    code = KILLED_IN_SWAP.format(root=ROOT, config=CONFIG, mirror=str(mirror), repo=str(repo))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL
    assert tree_digest(repo) != before  # killed half-way: new shards beside the old README
    [left] = [name for name in os.listdir(repo / staging.STAGING_DIR) if not name.endswith(".lock")]
    assert swap.pending(str(repo / staging.STAGING_DIR / left))

    removed = staging.remove_stale(str(repo))
    assert removed == [str(repo / staging.STAGING_DIR / left)]
    assert tree_digest(repo) == before
    datasets.load_dataset(str(repo), CONFIG)  # consistent again
    assert build.main(["--config", CONFIG, "--data-dir", str(mirror), "--output-dir", str(repo)]) == 0
    assert tree_digest(repo) == tree_digest(new)  # nothing of the earlier build left, whatever its layout
    assert not os.path.exists(repo / staging.STAGING_DIR)


OWNS_A_STAGING_DIR = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from arr_coc.publish.staging import staging_directory
    with staging_directory({repo!r}, "full") as path:
        open(path + "/partial.parquet", "w").write("half a shard")
        print(path, flush=True)
        time.sleep(600)
    """
)


def test_stale_staging_of_dead_builds_is_removed_but_never_a_running_builds(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    killed = subprocess.Popen([sys.executable, "-c", OWNS_A_STAGING_DIR.format(root=ROOT, repo=str(repo))], stdout=subprocess.PIPE, text=True)
    running = subprocess.Popen([sys.executable, "-c", OWNS_A_STAGING_DIR.format(root=ROOT, repo=str(repo))], stdout=subprocess.PIPE, text=True)
    try:
        killed_dir, running_dir = killed.stdout.readline().strip(), running.stdout.readline().strip()
        killed.kill()  # SIGKILL: like the OOM killer, no cleanup runs
        killed.wait()
        with staging.staging_directory(str(repo), "small") as own_dir:
            assert os.path.isdir(killed_dir) and os.path.exists(killed_dir + ".lock")
            assert staging.remove_stale(str(repo)) == [killed_dir]
            assert not os.path.exists(killed_dir) and not os.path.exists(killed_dir + ".lock")
            assert os.path.isdir(running_dir) and os.path.isdir(own_dir)
            assert staging.remove_stale(str(repo)) == []
        assert not os.path.exists(own_dir)
    finally:
        running.kill()
        running.wait()
    assert staging.remove_stale(str(repo)) == [running_dir]
    assert not os.path.exists(repo / staging.STAGING_DIR) or os.listdir(repo / staging.STAGING_DIR) == []


def test_a_swap_that_cannot_be_undone_keeps_the_old_build_for_the_next_build(old_and_new, mirror, tmp_path, monkeypatch, capsys):
    old, _ = old_and_new
    repo = tmp_path / "repo"
    shutil.copytree(old, repo)
    before = tree_digest(repo)
    real_replace, real_rename = os.replace, os.rename

    def replace(src, dst):
        if os.path.abspath(dst) == os.path.join(str(repo), "README.md") and str(src).endswith(os.sep + "README.md"):
            raise OSError("disk full")  # the new card cannot go in: roll back ...
        return real_replace(src, dst)

    def rename(src, dst):
        if str(src).endswith(os.sep + swap.OLD_DATA):
            raise OSError("I/O error")  # ... and the old shards cannot go back either
        return real_rename(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    args = ["--config", CONFIG, "--data-dir", str(mirror), "--output-dir", str(repo)]
    assert build.main(args) == 1
    monkeypatch.setattr(os, "replace", real_replace)
    monkeypatch.setattr(os, "rename", real_rename)
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "the previous build is kept in" in line and "the next build puts it back" in line
    assert tree_digest(repo) != before  # the old data/<config> sits in the staging folder
    assert staging.remove_stale(str(repo))
    assert tree_digest(repo) == before
