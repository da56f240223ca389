"""scripts/fetch_sources.py against a Range server on 127.0.0.1 serving a generated mirror: a full fetch
gives byte-identical files that build like the mirror itself, a dry run fetches nothing, a fetch killed
part-way completes on the next run without re-sending finished files (the partial one resumes by
Range), `--sources` fetches only what those sources read, and failures are one line and non-zero."""

import filecmp
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile

import build
import fetch_sources
import pytest
from helpers import ROOT, SIGNAL_DURING_IMPORTS, make_mirror, tree_digest
from range_server import FileServer, stalling_handler

from arr_coc.network import download as download_module
from arr_coc.readers import sources

# Downloads go by ranged chunks; small chunks make a small archive several requests long, as a
# 20 GB one is with the real chunk size, so that an interruption can fall between two of them.
CHUNK = 8 * 1024
STALLED_FILE = "images.zip"  # the biggest archive of the generated mirror
STALL_AT = CHUNK  # its first chunk arrives, the one from this byte on never does
OKVQA_FILES = {
    "OpenEnded_mscoco_train2014_questions.json.zip",
    "OpenEnded_mscoco_val2014_questions.json.zip",
    "mscoco_train2014_annotations.json.zip",
    "mscoco_val2014_annotations.json.zip",
    "train2014.zip",
    "val2014.zip",
}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A generated mirror holding every file of the URL table (a tiny zip for any the generator lacks)."""
    path = tmp_path_factory.mktemp("fetch-mirror")
    make_mirror(path)
    os.remove(path / "sample_mirror_manifest.json")  # not a source file
    for name in sources.OFFICIAL_URLS:
        if not (path / name).exists():
            with zipfile.ZipFile(path / name, "w") as archive:
                archive.writestr(name[: -len(".zip")], "[]")
    assert os.path.getsize(path / STALLED_FILE) > STALL_AT + 2 * CHUNK
    return path


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(download_module, "CHUNK_SIZE", CHUNK)


def mirror_names(mirror) -> set:
    return set(os.listdir(mirror))


def gets(server, name=None) -> list:
    return [entry for entry in server.requests(name) if entry.method == "GET"]


def assert_same_files(out_dir, mirror, names) -> None:
    assert set(os.listdir(out_dir)) == set(names)  # no .incomplete, .json or .lock left behind
    for name in names:
        assert filecmp.cmp(os.path.join(out_dir, name), os.path.join(mirror, name), shallow=False), name


def test_full_fetch_is_byte_identical_builds_and_is_not_repeated(mirror, tmp_path, small_chunks, capsys):
    out = tmp_path / "out"
    with FileServer(mirror) as server:
        assert fetch_sources.main([str(out), "--from", server.url, "--jobs", "3"]) == 0
        assert_same_files(out, mirror, mirror_names(mirror))
        server.clear_log()
        capsys.readouterr()
        assert fetch_sources.main([str(out), "--from", server.url]) == 0
        assert gets(server) == []  # a complete mirror costs a HEAD per file and not one byte of body
    assert f"0 to fetch (0 B), {len(mirror_names(mirror))} already complete" in capsys.readouterr().out

    from_fetch, from_mirror = tmp_path / "repo-fetch", tmp_path / "repo-mirror"
    assert build.main(["--config", "small", "--data-dir", str(out), "--output-dir", str(from_fetch)]) == 0
    assert build.main(["--config", "small", "--data-dir", str(mirror), "--output-dir", str(from_mirror)]) == 0
    assert tree_digest(from_fetch) == tree_digest(from_mirror)


def test_dry_run_prints_every_file_with_its_size_and_fetches_nothing(mirror, tmp_path, capsys):
    out = tmp_path / "out"
    with FileServer(mirror) as server:
        assert fetch_sources.main([str(out), "--from", server.url, "--dry-run"]) == 0
        assert gets(server) == []
    assert not out.exists()
    lines = capsys.readouterr().out.splitlines()
    for name in sources.OFFICIAL_URLS:
        (line,) = [line for line in lines if line.split()[0] == name]
        assert f"({os.path.getsize(mirror / name)} bytes)" in line and line.endswith("fetch")


def test_sources_restrict_the_fetch_to_what_they_read(mirror, tmp_path, capsys):
    out = tmp_path / "out"
    with FileServer(mirror) as server:
        assert fetch_sources.main([str(out), "--from", server.url, "--sources", "okvqa"]) == 0
        assert {entry.path.lstrip("/") for entry in gets(server)} == OKVQA_FILES
        assert_same_files(out, mirror, OKVQA_FILES)
        capsys.readouterr()
        # GQA's leakage control reads COCO's annotations and, once the URL table lists it, Visual Genome's map.
        assert fetch_sources.main([str(out), "--from", server.url, "--sources", "gqa", "--dry-run"]) == 0
    planned = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    leakage = {"annotations_trainval2014.zip", "image_data.json.zip"} & set(sources.OFFICIAL_URLS)
    assert planned == {"questions1.2.zip", "images.zip"} | leakage and "annotations_trainval2014.zip" in planned

    repo = tmp_path / "repo"
    assert build.main(["--config", "small", "--data-dir", str(out), "--sources", "okvqa", "--output-dir", str(repo)]) == 0
    assert any(name.endswith(".parquet") for name in os.listdir(repo / "data" / "small"))


def test_a_killed_fetch_resumes_without_resending_finished_bytes(mirror, tmp_path, small_chunks):
    out = tmp_path / "out"
    stalled, release = threading.Event(), threading.Event()
    handler = stalling_handler(STALLED_FILE, STALL_AT, stalled, release)
    child = (
        f"import sys; sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'scripts')!r}]; "
        f"import arr_coc.network.download; arr_coc.network.download.CHUNK_SIZE = {CHUNK}; "
        "import fetch_sources; sys.exit(fetch_sources.main(sys.argv[1:]))"
    )
    with FileServer(mirror, handler=handler) as server:
        process = subprocess.Popen([sys.executable, "-c", child, str(out), "--from", server.url, "--jobs", "2"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert stalled.wait(120), "the fetch never reached the stalled request"
            partial = out / (STALLED_FILE + download_module.INCOMPLETE_SUFFIX)
            deadline = time.monotonic() + 30
            while not (partial.exists() and partial.stat().st_size == STALL_AT) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            process.kill()  # SIGKILL: nothing gets to clean up
            process.wait()
            release.set()
        on_disk = partial.stat().st_size
        assert on_disk == STALL_AT
        complete = {name for name in mirror_names(mirror) if (out / name).exists()}
        assert complete and STALLED_FILE not in complete
        partials = {name: (out / (name + download_module.INCOMPLETE_SUFFIX)).stat().st_size
                     for name in mirror_names(mirror) - complete if (out / (name + download_module.INCOMPLETE_SUFFIX)).exists()}

        server.clear_log()
        assert fetch_sources.main([str(out), "--from", server.url]) == 0
        assert_same_files(out, mirror, mirror_names(mirror))
        for name in complete:
            assert gets(server, name) == [], name  # finished files are not sent again
        for name, have in partials.items():
            requests = gets(server, name)
            # Resumed by Range from the first missing byte: only the missing bytes went out (none at
            # all for a file killed between its last byte and its rename).
            if have:
                assert sum(entry.bytes_sent for entry in requests) == os.path.getsize(mirror / name) - have, name
            if 0 < have < os.path.getsize(mirror / name):
                assert min(range_start(entry) for entry in requests) == have, (name, requests)
        assert f"bytes={on_disk}-{on_disk + CHUNK - 1}" in {entry.range for entry in gets(server, STALLED_FILE)}


def range_start(entry) -> int:
    return int(entry.range[len("bytes="):].split("-")[0]) if entry.range else 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_at_once_in_one_line_and_keeps_the_partial_files(signum, mirror, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, os.path.join(ROOT, "scripts", "fetch_sources.py"), str(out)]
    stderr = interrupted_fetch(mirror, command, signum, lambda process: process.send_signal(signum))
    assert error_lines(stderr) == ["error: interrupted; run the same command again to resume (partial files are kept)"], stderr
    assert (out / (STALLED_FILE + download_module.INCOMPLETE_SUFFIX)).exists() and not (out / STALLED_FILE).exists()
    # The stalled file's download thread held its lock when the fetch left without unwinding it.
    assert not list(out.glob("*" + download_module.LOCK_SUFFIX))


def test_once_the_held_locks_are_removed_no_download_makes_a_new_one(tmp_path, monkeypatch):
    """Between fetch_sources' removal of the lock files and its exit, download threads still run: one
    that started the next file there left that file's lock behind (5 of 20 interrupted fetches)."""
    monkeypatch.setattr(download_module, "_leaving", False)  # process-wide; restored after the test
    held, leave = threading.Event(), threading.Event()

    def download_in_progress():
        with download_module._only_writer(str(tmp_path / "a.zip")):
            held.set()
            leave.wait(10)

    thread = threading.Thread(target=download_in_progress)
    thread.start()
    try:
        assert held.wait(10) and (tmp_path / ("a.zip" + download_module.LOCK_SUFFIX)).exists()
        download_module.remove_held_locks()
        assert not list(tmp_path.glob("*" + download_module.LOCK_SUFFIX))
        with pytest.raises(InterruptedError, match="b.zip.lock: not started, the process is leaving"):
            with download_module._only_writer(str(tmp_path / "b.zip")):
                pass
        assert not list(tmp_path.glob("*" + download_module.LOCK_SUFFIX))
    finally:
        leave.set()
        thread.join(10)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="picks a thread through /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_that_another_thread_takes_stops_the_fetch_at_once_too(signum, mirror, tmp_path):
    # Linux gives a process's signal to whichever of its threads suits it, not always the main one (a
    # thread being created at that moment takes it, for one); kill(2) given a thread's id picks that
    # thread. Python runs the handler in the main thread only, once that thread is back in Python
    # code: an untimed wait for the downloads (pool.map) kept it blocked until the stalled file ended.
    out = tmp_path / "out"
    command = [sys.executable, os.path.join(ROOT, "scripts", "fetch_sources.py"), str(out),
               "--sources", "gqa", "--jobs", "1"]  # one file at a time: the main thread waits for the stalled one

    def signal_another_thread(process):
        time.sleep(0.2)  # the main thread is in that wait by now
        os.kill(another_thread(process.pid, signum), signum)

    stderr = interrupted_fetch(mirror, command, signum, signal_another_thread)
    assert error_lines(stderr) == ["error: interrupted; run the same command again to resume (partial files are kept)"], stderr
    assert (out / (STALLED_FILE + download_module.INCOMPLETE_SUFFIX)).exists() and not (out / STALLED_FILE).exists()


def another_thread(pid: int, signum: int) -> int:
    """The id of a thread of process `pid`, not its main one, that does not block `signum`."""
    for tid in sorted(int(name) for name in os.listdir(f"/proc/{pid}/task")):
        with open(f"/proc/{pid}/task/{tid}/status") as handle:
            blocked = int(re.search(r"^SigBlk:\s*([0-9a-f]+)$", handle.read(), re.MULTILINE).group(1), 16)
        if tid != pid and not blocked & (1 << (signum - 1)):
            return tid
    raise AssertionError(f"process {pid} has no other thread that takes signal {signum}")


def interrupted_fetch(mirror, command: list, signum: int, send_signal) -> str:
    """Runs `command` + `--from URL` against the mirror, whose STALLED_FILE never sends a byte, calls
    `send_signal(process)` once it is stalled, and returns the stderr of a process that ended with
    128 + signum at once: not held up by the stalled download (whose read timeout is a minute away)."""
    stalled, release = threading.Event(), threading.Event()
    with FileServer(mirror, handler=stalling_handler(STALLED_FILE, 0, stalled, release)) as server:
        process = subprocess.Popen(command + ["--from", server.url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert stalled.wait(120), "the fetch never reached the stalled request"
            send_signal(process)
            assert process.wait(20) == 128 + signum
        finally:
            process.kill()
            release.set()
        return process.stderr.read()


def error_lines(stderr: str) -> list[str]:
    # Progress bars of the other threads are cleared with cursor moves around the line.
    lines = (re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).strip() for line in stderr.splitlines())
    return [line for line in lines if line.startswith("error:")]


def test_a_file_missing_at_the_source_fails_in_one_line_after_the_others(mirror, tmp_path, capsys):
    served = tmp_path / "served"
    shutil.copytree(mirror, served)
    os.remove(served / "val2014.zip")
    out = tmp_path / "out"
    with FileServer(served) as server:
        assert fetch_sources.main([str(out), "--from", server.url, "--sources", "okvqa"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {server.url}/val2014.zip: not found at the source"]
    assert_same_files(out, mirror, OKVQA_FILES - {"val2014.zip"})

    # Once complete, the mirror does not depend on the source: a file it no longer has is kept.
    shutil.copy(mirror / "val2014.zip", out / "val2014.zip")
    os.remove(served / "train2014.zip")
    with FileServer(served) as server:
        assert fetch_sources.main([str(out), "--from", server.url, "--sources", "okvqa"]) == 0
        # (fsspec follows a 404 to its HEAD with a GET, which has no body either)
        assert [entry for entry in gets(server) if entry.bytes_sent or entry.status != 404] == []
    assert_same_files(out, mirror, OKVQA_FILES)


def test_a_different_file_in_the_way_is_left_alone(mirror, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "val2014.zip").write_bytes(b"the user's own file")
    with FileServer(mirror) as server:
        assert fetch_sources.main([str(out), "--from", server.url, "--sources", "okvqa"]) == 1
        assert gets(server, "val2014.zip") == []
    assert (out / "val2014.zip").read_bytes() == b"the user's own file"
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "val2014.zip has 19 bytes but" in error and "move it away" in error


def test_from_must_be_a_url(tmp_path, capsys):
    assert fetch_sources.main([str(tmp_path / "out"), "--from", str(tmp_path)]) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"error: --from {tmp_path}: expected an http(s) or fsspec URL")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_startup_is_one_line_and_128_plus_signum(signum, tmp_path):
    script = os.path.join(ROOT, "scripts", "fetch_sources.py")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", SIGNAL_DURING_IMPORTS, script, "tqdm", str(int(signum)), str(out), "--dry-run"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 128 + signum, result.stderr
    assert result.stderr.splitlines() == [f"error: interrupted ({signal.Signals(signum).name}); nothing was fetched"]
    assert not out.exists()


def test_a_server_without_range_support_serves_files_bigger_than_a_chunk(mirror, tmp_path, small_chunks):
    """`python -m http.server` ignores Range: each file then comes in one whole GET, and a failed one
    leaves neither a lock nor a partial file that no resume could use."""
    out = tmp_path / "out"
    assert os.path.getsize(mirror / STALLED_FILE) > 2 * CHUNK
    with FileServer(mirror, ranges=False) as server:
        assert fetch_sources.main([str(out), "--from", server.url, "--sources", "okvqa,gqa"]) == 0
    names = {name for name in mirror_names(mirror) if name in OKVQA_FILES or name in
             {"questions1.2.zip", "images.zip", "annotations_trainval2014.zip", "image_data.json.zip"}}
    assert_same_files(out, mirror, names)

    served = tmp_path / "served"
    shutil.copytree(mirror, served)
    (served / "images.zip").write_bytes((mirror / "images.zip").read_bytes()[: 3 * CHUNK])  # not a zip any more
    os.remove(out / "images.zip")
    with FileServer(served, ranges=False) as server:
        assert fetch_sources.main([str(out), "--from", server.url, "--sources", "gqa"]) == 1
    assert not [name for name in os.listdir(out) if name.startswith("images.zip")]  # no lock, no useless partial
