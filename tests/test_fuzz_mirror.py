"""Fuzz: a generated mirror damaged in many small ways never gives a silent loss or a vague error.

Every damaged build either succeeds with an invariant-clean report (no item lost without a reason,
no null turned into the text "None"), or fails with one line naming the damaged file; a failing
`scripts/build.py` leaves the repository's previous build byte-identical. Damages are drawn from
fixed seeds, so a failure here replays exactly.
"""

import copy
import json
import os
import random
import re
import shutil
import subprocess
import sys
import zipfile

import build
import datasets
import pytest
from helpers import ROOT, make_mirror, tree_digest

from arr_coc.pipeline.report import check_invariant
from arr_coc.readers import sources
from arr_coc_vqa import ArrCocVqa

BUILD = os.path.join(ROOT, "scripts", "build.py")
SPLITS = ("train", "validation")
REASONS = {"missing_image", "corrupt_image", "no_annotation", "eval_overlap", "train_overlap"}
# The fields the readers use: damaging another one (GQA's `semantic`, ...) changes nothing.
READ_FIELDS = (
    "question_id", "image_id", "question", "answers", "multiple_choice_answer", "answer_type", "question_type",
    "imageId", "answer", "fullAnswer", "types", "id", "file_name", "caption",
)
WRONG_VALUES = (None, [], {}, 1.5, "x48", True, -1, [1], {"detailed": 3}, "")
JSON_DAMAGES = ("truncate-json", "flip-json", "null", "wrong-type", "duplicate", "missing-key")
ZIP_DAMAGES = ("flip-zip", "truncate-zip", "flip-image-zip", "flip-image-zip")
IMAGE_ARCHIVES = ("images.zip", "train2014.zip", "val2014.zip")
CASES = 32
QUESTIONS_PER_IMAGE = 2
# One small damage may cost one image's items (a corrupt image, a question moved to another image),
# never a whole file's.
MAX_ITEMS_LOST = QUESTIONS_PER_IMAGE
SUBPROCESS_CASES = (4, 9, 31)  # also through scripts/build.py (a few s each): two failing, one harmless


def json_members() -> list[tuple[str, str, tuple]]:
    """(archive, member, sources reading it) for every JSON file of the mirror."""
    found = {}
    for source in sources.ORIGINAL_SPLITS:
        for split in SPLITS:
            files = sources.source_files(source, split)
            for part in (files.questions, files.annotations):
                if part is not None:
                    found[(part.archive, part.member)] = (source,)
    return [(archive, member, readers) for (archive, member), readers in sorted(found.items())]


def archives() -> list[tuple[str, tuple]]:
    """(archive, sources reading it) for every archive of the mirror, image archives included."""
    readers: dict[str, set] = {}
    for source in sources.ORIGINAL_SPLITS:
        for split in SPLITS:
            files = sources.source_files(source, split)
            for name in (files.questions.archive, files.image_archive) + ((files.annotations.archive,) if files.annotations else ()):
                readers.setdefault(name, set()).add(source)
    return [(name, tuple(sorted(found))) for name, found in sorted(readers.items())]


# -- damages ---------------------------------------------------------------------------------------


def rewrite_member(path, member: str, change) -> None:
    """Replace one member's bytes by change(bytes), keeping every other member as it was."""
    with zipfile.ZipFile(path) as handle:
        entries = [(info, handle.read(info)) for info in handle.infolist()]
    [name] = [info.filename for info, _ in entries if os.path.basename(info.filename) == os.path.basename(member)]
    with zipfile.ZipFile(path, "w") as handle:
        for info, data in entries:
            handle.writestr(info, change(data) if info.filename == name else data)


def records_of(document, rng: random.Random):
    """A random record list (or GQA's dict of records) of a parsed document."""
    if isinstance(document, dict) and ("questions" in document or "annotations" in document or "images" in document):
        keys = [key for key in ("questions", "annotations", "images") if isinstance(document.get(key), list) and document[key]]
        return document[rng.choice(keys)]
    return document  # GQA: question id -> record


def pick_record(records, rng: random.Random) -> dict:
    if isinstance(records, list):
        return rng.choice(records)
    return records[rng.choice(sorted(records))]


def damage_document(document, kind: str, rng: random.Random) -> str:
    """The document, damaged, as JSON text."""
    records = records_of(document, rng)
    record = pick_record(records, rng)
    fields = [key for key in READ_FIELDS if key in record] or sorted(record)
    field = rng.choice(fields)
    if field == "answers" and kind in ("null", "wrong-type") and rng.random() < 0.6:
        record = rng.choice(record["answers"])  # one of the ten answers instead
        field = rng.choice(["answer", "answer_id"])
    if kind == "null":
        record[field] = None
    elif kind == "wrong-type":
        record[field] = rng.choice([value for value in WRONG_VALUES if value != record[field]])
    elif kind == "missing-key":
        if rng.random() < 0.25 and isinstance(records, list):
            key = next(key for key, value in document.items() if value is records)
            document[key[:-1]] = document.pop(key)  # "questions" -> "question"
        else:
            del record[field]
    elif kind == "duplicate":  # the same id again, with other content: which one would win?
        if isinstance(records, list):
            again = copy.deepcopy(record)
            for key, value in (("question", "Again?"), ("caption", "Again."), ("file_name", "again.jpg")):
                if key in again:
                    again[key] = value
            records.append(again)
        else:  # a JSON object may repeat a key; json.dumps cannot write that, so splice it in
            key = rng.choice(sorted(records))
            text = json.dumps(document)
            return text[:-1] + f", {json.dumps(key)}: {json.dumps(dict(records[key], question='Again?'))}}}"
    return json.dumps(document)


def damage(mirror, case: int) -> tuple[str, tuple, str]:
    """Damage the mirror copy by case number: (damaged archive, sources to build, what was done)."""
    rng = random.Random(9000 + case)
    kinds = JSON_DAMAGES + ZIP_DAMAGES
    kind = kinds[case % len(kinds)]
    if kind in ZIP_DAMAGES:
        candidates = [entry for entry in archives() if kind != "flip-image-zip" or entry[0] in IMAGE_ARCHIVES]
        archive, readers = rng.choice(candidates)
        path = os.path.join(str(mirror), archive)
        data = bytearray(open(path, "rb").read())
        if kind in ("flip-zip", "flip-image-zip"):
            position = rng.randrange(len(data))
            data[position] ^= 1 << rng.randrange(8)
            what = f"{kind} byte {position} of {archive}"
        else:
            data = data[: rng.randrange(len(data))]
            what = f"{kind} {archive} to {len(data)} bytes"
        with open(path, "wb") as handle:
            handle.write(bytes(data))
        return archive, readers, what
    archive, member, readers = rng.choice(json_members())

    def change(data: bytes) -> bytes:
        if kind == "truncate-json":
            return data[: rng.randrange(len(data))]
        if kind == "flip-json":
            flipped = bytearray(data)
            flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return bytes(flipped)
        return damage_document(json.loads(data), kind, rng).encode()

    rewrite_member(os.path.join(str(mirror), archive), member, change)
    return archive, readers, f"{kind} in {archive}:{member}"


# -- checks ----------------------------------------------------------------------------------------


def check_success(builder, clean_stats: dict) -> None:
    # Row counts from the split infos: a split whose every image was skipped has no Arrow data to
    # open (as_dataset refuses an empty split; build.py's handling of that is issue 9, item 12).
    split_rows = {split: builder.info.splits[split].num_examples for split in SPLITS}
    stats = builder.build_stats()
    check_invariant({"sources": stats}, split_rows)
    for source, per_split in stats.items():
        for split, split_stats in per_split.items():
            clean = clean_stats[source][split]
            assert set(split_stats["skipped"]) <= REASONS
            assert split_stats["items_written"] >= clean["items_written"] - MAX_ITEMS_LOST, (source, split, split_stats)
            assert split_stats["items_total"] <= clean["items_total"] + 1, (source, split, split_stats)
    for split in SPLITS:
        if split_rows[split]:
            for conversation in builder.as_dataset(split=split)["conversations"]:
                assert all(turn["content"] not in ("None", "") for turn in conversation)


def check_failure_reason(reason: str, archive: str) -> None:
    assert "\n" not in reason and len(reason) < 600, reason
    assert archive in reason, f"the reason does not name the damaged {archive}: {reason}"


def error_line(stderr: str) -> str:
    noise = re.compile(r"^(INFO |WARNING |Generating |Map|Loading |Saving )|examples/s\]|it/s\]")
    lines = [line for line in re.split(r"[\r\n]+", stderr) if line.strip() and not noise.search(line)]
    assert len(lines) == 1, stderr
    return lines[0]


# -- the fuzz loop ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz-mirror")
    make_mirror(path, images_per_split=6, questions_per_image=QUESTIONS_PER_IMAGE)
    return path


@pytest.fixture(scope="module")
def clean_stats(mirror, tmp_path_factory):
    builder = ArrCocVqa(config_name="full", data_dir=str(mirror), cache_dir=str(tmp_path_factory.mktemp("fuzz-clean")))
    builder.download_and_prepare()
    return builder.build_stats()


@pytest.fixture(scope="module")
def previous_build(mirror, tmp_path_factory):
    repo = tmp_path_factory.mktemp("fuzz-repo")
    assert build.main(["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo)]) == 0
    return repo


def test_damaged_mirrors_succeed_cleanly_or_fail_in_one_line(mirror, clean_stats, previous_build, tmp_path):
    before = tree_digest(previous_build)
    datasets.disable_progress_bars()
    outcomes = []
    try:
        for case in range(CASES):
            bad = tmp_path / f"case-{case}"
            shutil.copytree(mirror, bad)
            archive, readers, what = damage(bad, case)
            builder = ArrCocVqa(config_name="full", data_dir=str(bad), cache_dir=str(tmp_path / f"cache-{case}"), sources=readers)
            try:
                builder.download_and_prepare()
            except Exception as error:  # noqa: BLE001 - judged below, as build.py reports it
                failures = builder.build_failures()
                reason = failures[0] if failures else build.one_line_reason(error)
                check_failure_reason(reason, archive)
                outcomes.append(("failed", what, reason))
            else:
                check_success(builder, clean_stats)
                outcomes.append(("built", what, ""))
            if case in SUBPROCESS_CASES:
                run_build_py(bad, readers, archive, outcomes[-1][0] == "failed", previous_build, tmp_path / f"out-{case}")
            shutil.rmtree(tmp_path / f"cache-{case}", ignore_errors=True)
    finally:
        datasets.enable_progress_bars()
    assert tree_digest(previous_build) == before
    # The damages must exercise both outcomes, or the fuzz proves little.
    assert 8 <= sum(outcome == "failed" for outcome, _, _ in outcomes) <= CASES - 4, outcomes


def run_build_py(bad, readers, archive, expect_failure: bool, previous_build, scratch) -> None:
    """A failing damage, through scripts/build.py into the previous build; a harmless one, into scratch."""
    output = previous_build if expect_failure else scratch
    result = subprocess.run(
        [sys.executable, BUILD, "--config", "small", "--data-dir", str(bad), "--output-dir", str(output),
         "--sources", ",".join(readers)],
        capture_output=True,
        text=True,
    )
    if expect_failure:
        assert result.returncode == 1, result.stderr
        line = error_line(result.stderr)
        assert line.startswith("error: ") and "Traceback" not in result.stderr
        check_failure_reason(line, archive)
    else:
        assert result.returncode == 0, result.stderr
        with open(os.path.join(str(scratch), "data", "small", "build_report.json")) as handle:
            report = json.load(handle)
        check_invariant(report, {split: report["splits"][split]["rows"] for split in SPLITS})
