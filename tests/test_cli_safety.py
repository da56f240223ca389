"""The command-line tools fail early and in one line, stop cleanly, and never delete or overwrite
what they did not create."""

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile

import datasets
import psutil
import pytest
from helpers import ROOT, SIGNAL_DURING_IMPORTS, make_mirror, tree_digest
from range_server import FileServer, stalling_handler

import build

BUILD = os.path.join(ROOT, "scripts", "build.py")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    path = tmp_path_factory.mktemp("mirror")
    make_mirror(path, images_per_split=6, questions_per_image=2)
    return path


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# -- item 11: the card is checked before anything is built ----------------------------------------


@pytest.mark.parametrize(
    "front_matter",
    ["---\nconfigs: [\n---\n# card\n", "---\nconfigs: 3\n---\n# card\n", "---\nlicense: mit\n# never closed\n"],
    ids=["bad-yaml", "configs-not-a-list", "unclosed"],
)
def test_a_broken_readme_front_matter_fails_before_the_build(front_matter, mirror, tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text(front_matter)
    before = tree_digest(repo)

    def no_build(*args, **kwargs):
        raise AssertionError("the builder ran although the card is broken")

    monkeypatch.setattr(build.ArrCocVqa, "download_and_prepare", no_build)
    assert build.main(["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo)]) == 1
    [line] = error_lines(capsys.readouterr().err)
    assert line.startswith(f"error: {repo / 'README.md'}: cannot update the YAML front matter")
    assert tree_digest(repo) == before and sorted(os.listdir(repo)) == ["README.md"]


# -- item 12: empty splits ---------------------------------------------------------------------------


def test_a_split_capped_to_zero_images_is_left_out_and_the_rest_loads(mirror, tmp_path):
    repo = tmp_path / "repo"
    args = ["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo)]
    assert build.main(args + ["--max-images-validation", "2"]) == 0
    assert build.main(args + ["--max-images-validation", "0"]) == 0
    assert not [name for name in os.listdir(repo / "data" / "small") if name.startswith("validation")]
    loaded = datasets.load_dataset(str(repo), "small")
    assert list(loaded) == ["train"] and len(loaded["train"]) > 0
    assert list(datasets.get_dataset_infos(str(repo))["small"].splits) == ["train"]
    streamed = datasets.load_dataset(str(repo), "small", streaming=True)
    assert list(streamed) == ["train"]
    report = json.loads((repo / "data" / "small" / "build_report.json").read_text())
    assert report["splits"]["validation"] == {"rows": 0, "shards": {}}  # shards per source: none
    assert all(per_split["validation"]["items_selected"] == 0 for per_split in report["sources"].values())


def test_a_split_whose_every_image_is_skipped_is_a_one_line_error(mirror, tmp_path, capsys):
    bad = tmp_path / "mirror"
    bad.mkdir()
    for name in os.listdir(mirror):
        os.symlink(mirror / name, bad / name)
    os.remove(bad / "val2014.zip")
    with zipfile.ZipFile(bad / "val2014.zip", "w"):
        pass  # every COCO val image is missing
    repo = tmp_path / "repo"
    args = ["--config", "small", "--output-dir", str(repo), "--sources", "coco"]
    assert build.main(args + ["--data-dir", str(mirror)]) == 0
    before = tree_digest(repo)
    capsys.readouterr()
    assert build.main(args + ["--data-dir", str(bad)]) == 1
    [line] = error_lines(capsys.readouterr().err)
    assert line.startswith("error: the validation split has no rows: coco 6 items selected (missing_image 6 skipped)")
    assert tree_digest(repo) == before


def test_capping_every_split_to_zero_is_refused_up_front(mirror, tmp_path, capsys):
    repo = tmp_path / "repo"
    args = ["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo)]
    assert build.main(args + ["--max-images-train", "0", "--max-images-validation", "0"]) == 1
    [line] = error_lines(capsys.readouterr().err)
    assert "nothing to build" in line
    assert not os.path.exists(repo / "data")


# -- item 10: Ctrl-C with worker processes -----------------------------------------------------------


def test_ctrl_c_with_num_proc_2_exits_130_in_one_line(tmp_path):
    mirror = tmp_path / "mirror"
    make_mirror(mirror, images_per_split=40, questions_per_image=2)
    repo = tmp_path / "repo"
    command = [sys.executable, BUILD, "--config", "full", "--data-dir", str(mirror), "--output-dir", str(repo), "--num-proc", "2"]
    for delay in (0.3,):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 60
        while len(psutil.Process(process.pid).children()) < 2:  # the pool's workers are up
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        workers = psutil.Process(process.pid).children(recursive=True)
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "Traceback" not in err and "Exception ignored" not in err
        assert error_lines(err) == ["error: interrupted (SIGINT); the previous shards and README are untouched"]
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive
        assert not os.path.exists(repo / "data")
        assert not os.path.exists(repo / ".build-staging")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_while_build_imports_datasets_is_one_line_and_128_plus_signum(signum, mirror, tmp_path):
    repo = tmp_path / "repo"
    args = ["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo), "--num-proc", "2"]
    result = subprocess.run([sys.executable, "-c", SIGNAL_DURING_IMPORTS, BUILD, "datasets", str(int(signum))] + args,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 128 + signum, result.stderr
    assert result.stderr.splitlines() == [f"error: interrupted ({signal.Signals(signum).name}); nothing was changed"]
    assert not repo.exists()


# -- Ctrl-C during a download: at once, keeping the chunks written (issue 17, item 7) -------------------

CHUNK = 256  # download chunks small enough that a small annotation archive is several of them

# scripts/build.py as `python build.py ARGS` runs it, downloading in CHUNK-byte chunks.
BUILD_WITH_SMALL_CHUNKS = f"""
import runpy, sys
sys.path.insert(0, {ROOT!r})
import arr_coc.network.download
arr_coc.network.download.CHUNK_SIZE = {CHUNK}
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_ctrl_c_during_a_download_stops_the_build_at_once_and_keeps_the_chunks_written(mirror, tmp_path):
    # The second chunk of okvqa's train annotations never arrives. Waiting for the chunks in flight
    # (a 16 MB one over a slow link, or this one until its read timeout) delayed the exit.
    name = "mscoco_train2014_annotations.json.zip"
    assert os.path.getsize(mirror / name) > 3 * CHUNK
    cache, repo = tmp_path / "cache", tmp_path / "repo"
    stalled, release = threading.Event(), threading.Event()
    with FileServer(mirror, handler=stalling_handler(name, CHUNK, stalled, release)) as server:
        command = [sys.executable, "-c", BUILD_WITH_SMALL_CHUNKS, BUILD, "--config", "small", "--sources", "okvqa",
                   "--data-dir", server.url, "--cache-dir", str(cache), "--output-dir", str(repo)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert stalled.wait(120), "the build never reached the stalled request"
            deadline = time.monotonic() + 30
            while [os.path.getsize(path) for path in glob.glob(str(cache / "**" / f"*{name}.incomplete"), recursive=True)] != [CHUNK]:
                assert time.monotonic() < deadline, "the first chunk never reached the disk"
                time.sleep(0.02)
            process.send_signal(signal.SIGINT)
            assert process.wait(20) == 130  # the stalled request would hold it for a minute
        finally:
            process.kill()
            release.set()
        err = process.stderr.read()
    assert "Traceback" not in err
    assert error_lines(err) == ["error: interrupted (SIGINT); the previous shards and README are untouched"]
    [partial] = glob.glob(str(cache / "**" / f"*{name}.incomplete"), recursive=True)
    assert os.path.getsize(partial) == CHUNK  # what the next build resumes from
    assert not os.path.exists(repo / "data")


# -- item 3: scripts/demo.py --scratch ----------------------------------------------------------------

def test_demo_refuses_a_scratch_directory_it_did_not_create(tmp_path, monkeypatch, capsys):
    import demo

    mine = tmp_path / "my-work"
    (mine / "notes").mkdir(parents=True)
    (mine / "thesis.tex").write_text("months of work")
    before = tree_digest(mine)
    monkeypatch.chdir(mine)
    for scratch in (str(mine), "."):
        assert demo.main(["--scratch", scratch]) == 1
        [line] = error_lines(capsys.readouterr().err)
        assert line.startswith(f"error: {scratch}: not empty and not created by this demo")
        assert tree_digest(mine) == before and (mine / "notes").is_dir()


def test_demo_reruns_remove_only_what_the_demo_wrote(tmp_path, monkeypatch, capsys):
    import demo

    scratch = tmp_path / "scratch"
    assert demo.main(["--scratch", str(scratch)]) == 0
    assert {"sample_mirror", "demo-repo", demo.MARKER} <= set(os.listdir(scratch))
    (scratch / "keep.txt").write_text("the user's")
    (scratch / "sample_mirror" / "stale-from-an-old-run.zip").write_bytes(b"x")

    def build_fails(argv):
        return 1  # stop after the mirror: a rerun's clearing and regeneration is what is tested

    monkeypatch.setattr(demo.build, "main", build_fails)
    assert demo.main(["--scratch", str(scratch)]) == 1
    assert (scratch / "keep.txt").read_text() == "the user's"
    assert not (scratch / "sample_mirror" / "stale-from-an-old-run.zip").exists()
    assert not (scratch / "demo-repo").exists()
    assert "1. sample mirror" in capsys.readouterr().out


# -- item 14: make_sample_mirror.py never writes into a repository's data/ or over foreign files ----------

import make_sample_mirror  # noqa: E402


def test_sample_mirror_refuses_a_repositorys_data_folder(tmp_path):
    by_script = tmp_path / "checkout"
    (by_script / "data").mkdir(parents=True)
    (by_script / "arr_coc_vqa.py").write_text("# builder")
    by_card = tmp_path / "hub-clone"
    (by_card / "data" / "small").mkdir(parents=True)
    (by_card / "README.md").write_text("---\nconfigs:\n- config_name: small\n  data_files: data/small/*\n---\n# card\n")
    for out in (by_script / "data", by_script / "data" / "mirror", by_card / "data" / "small", by_card / "data" / "new" / "deeper"):
        result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_sample_mirror.py"), str(out)],
                                capture_output=True, text=True)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1].startswith(f"make_sample_mirror: {out}: inside ")
        assert not out.exists() or os.listdir(out) == []
    ok = tmp_path / "hub-clone" / "mirrors"  # beside data/ is fine
    make_sample_mirror.write_sample_mirror(ok, images_per_split=2)
    assert (ok / make_sample_mirror.MANIFEST_NAME).exists()


def test_sample_mirror_overwrites_only_files_its_manifest_lists(tmp_path):
    out = tmp_path / "mirror"
    make_sample_mirror.write_sample_mirror(out, images_per_split=2)
    make_sample_mirror.write_sample_mirror(out, images_per_split=3)  # its own files: regenerated
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "val2014.zip").write_bytes(b"the real COCO val2014, 6 GB")
    with pytest.raises(ValueError, match=r"val2014.zip: not written by this generator"):
        make_sample_mirror.write_sample_mirror(theirs, images_per_split=2)
    assert (theirs / "val2014.zip").read_bytes() == b"the real COCO val2014, 6 GB"
    assert os.listdir(theirs) == ["val2014.zip"]
    (out / "v2_Questions_Test_mscoco.zip").write_bytes(b"downloaded by hand")
    with pytest.raises(ValueError, match=r"v2_Questions_Test_mscoco.zip: not written by this generator"):
        make_sample_mirror.write_sample_mirror(out, images_per_split=2)


# -- review of item 3: the demo deletes only what it provably wrote, and never writes into data/ ------------


def test_demo_refuses_a_markerless_scratch_holding_a_folder_named_like_its_own(tmp_path, capsys):
    import demo

    for holds in ([demo.REPO], [demo.MIRROR], [demo.MIRROR, demo.REPO]):
        user_dir = tmp_path / "-".join(holds)
        for name in holds:
            (user_dir / name).mkdir(parents=True)
            (user_dir / name / "thesis.tex").write_text("precious")
        before = tree_digest(user_dir)
        assert demo.main(["--scratch", str(user_dir)]) == 1
        [line] = error_lines(capsys.readouterr().err)
        assert line.startswith(f"error: {user_dir}: not empty and not created by this demo")
        assert tree_digest(user_dir) == before and sorted(os.listdir(user_dir)) == sorted(holds)


def test_demo_reruns_into_a_markerless_scratch_only_when_all_of_it_is_the_demos(tmp_path, monkeypatch, capsys):
    import demo

    scratch = tmp_path / "old-demo"
    assert demo.main(["--scratch", str(scratch)]) == 0
    os.remove(scratch / demo.MARKER)  # as a demo from before the marker left it
    old_demo = tree_digest(scratch)
    extra = scratch / "demo-repo" / "data" / "small" / "notes.txt"
    extra.write_text("the user's")
    assert demo.main(["--scratch", str(scratch)]) == 1
    [line] = error_lines(capsys.readouterr().err)
    assert line.startswith(f"error: {scratch}: not empty and not created by this demo") and str(extra) in line
    assert extra.read_text() == "the user's"
    os.remove(extra)
    assert tree_digest(scratch) == old_demo

    monkeypatch.setattr(demo.build, "main", lambda argv: 1)  # stop after the mirror
    assert demo.main(["--scratch", str(scratch)]) == 1
    assert not (scratch / "demo-repo").exists() and (scratch / demo.MARKER).exists()


def test_demo_refuses_a_repositorys_data_folder_before_writing_anything(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "data").mkdir(parents=True)
    (checkout / "arr_coc_vqa.py").write_text("# builder")
    for scratch in (checkout / "data" / "x", checkout / "data"):
        result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "demo.py"), "--scratch", str(scratch)],
                                capture_output=True, text=True)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert error_lines(result.stderr) == result.stderr.strip().splitlines()
        [line] = error_lines(result.stderr)
        assert line.startswith(f"error: {scratch}: inside {checkout / 'data'}")
    assert os.listdir(checkout / "data") == []


def test_every_demo_failure_is_one_error_line(tmp_path, monkeypatch, capsys):
    import demo

    def broken_generator(out_dir, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(demo.make_sample_mirror, "write_sample_mirror", broken_generator)
    assert demo.main(["--scratch", str(tmp_path / "scratch")]) == 1
    assert error_lines(capsys.readouterr().err) == ["error: RuntimeError: disk on fire"]


# -- what an interrupt leaves half-built prints nothing after the one line ---------------------------


def test_a_progress_bar_half_built_by_an_interrupt_prints_nothing_after_the_line(mirror, tmp_path, monkeypatch, capsys):
    """SIGTERM between tqdm's `disable` and its `pos` (seen once in test_swap's random-moment runs):
    the half-built bar's __del__ raised AttributeError when it was collected, and Python printed
    "Exception ignored in: <function tqdm.__del__ ...>" and a traceback after the one-line error."""
    import gc

    from tqdm import std

    from arr_coc.process.interrupts import Interrupted

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    real_free_pos = std.tqdm._get_free_pos

    def interrupted_while_building_a_bar(instance=None):
        monkeypatch.setattr(std.tqdm, "_get_free_pos", real_free_pos)  # once: the build's first bar
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(std.tqdm, "_get_free_pos", staticmethod(interrupted_while_building_a_bar))
    repo = tmp_path / "repo"
    assert build.main(["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo)]) == 143
    gc.collect()
    assert error_lines(capsys.readouterr().err) == ["error: interrupted (SIGTERM); the previous shards and README are untouched"]
    assert [entry.exc_type for entry in unraisable] == []
