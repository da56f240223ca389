"""Leakage control: Visual Genome's id map, `metadata.coco_id`, and the `eval_overlap` / `train_overlap` skips.

The generated mirror maps some GQA train images to COCO val2014 photos and some GQA val images to COCO
train2014 photos (its manifest lists them under `overlap`), others to null, and has `n...` imageIds with no
record at all; see scripts/make_sample_mirror.py `_plan_visual_genome`.
"""

import io
import json
import os
import re
import subprocess
import sys
import zipfile

import build
import datasets
import pytest
from helpers import ROOT, SPLITS, make_mirror, prepared, raw_rows, run_readme_snippets

from arr_coc.pipeline import decontamination
from arr_coc.process.errors import SourceFormatError
from arr_coc.readers import vg
from arr_coc_vqa import ArrCocVqa

REALDATA = os.environ.get("ARR_COC_REALDATA") or os.path.join(ROOT, "..", "shared", "realdata")
REAL_IMAGE_DATA = os.path.join(REALDATA, "vg", "hf-dummy", "image_data.json")
SOURCE_NAMES = ["vqav2", "gqa", "okvqa", "coco"]
REASON = {"train": "eval_overlap", "validation": "train_overlap"}
BUILD = os.path.join(ROOT, "scripts", "build.py")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    path = tmp_path_factory.mktemp("mirror")
    return path, make_mirror(path, images_per_split=10, questions_per_image=3)


@pytest.fixture(scope="module")
def built(mirror, tmp_path_factory):
    """{True/False: (builder, {split: rows})}: the same mirror with decontamination on and off."""
    result = {}
    for enabled in (True, False):
        builder = prepared(mirror[0], tmp_path_factory.mktemp("cache"), "full", decontaminate=enabled)
        dataset = builder.as_dataset()
        result[enabled] = builder, {split: raw_rows(dataset[split]) for split in SPLITS}
    return result


def coco_split_ids(mirror_path) -> dict:
    with zipfile.ZipFile(os.path.join(str(mirror_path), "annotations_trainval2014.zip")) as archive:
        return {
            split: {str(image["id"]) for image in json.loads(archive.read(f"annotations/captions_{sub}.json"))["images"]}
            for split, sub in (("train", "train2014"), ("validation", "val2014"))
        }


def source_of(row) -> str:
    return SOURCE_NAMES[row["source"]] if isinstance(row["source"], int) else row["source"]


# -- the reader -------------------------------------------------------------------------------


def test_reader_on_real_visual_genome_records():
    if not os.path.isfile(REAL_IMAGE_DATA):
        pytest.skip(f"real data not available at {REAL_IMAGE_DATA} (set ARR_COC_REALDATA)")
    with open(REAL_IMAGE_DATA, "rb") as handle:
        coco_ids = vg.read_coco_ids(handle, REAL_IMAGE_DATA)
    # The first five records of the official file: image_id 1-5, every coco_id null, kept as None.
    assert coco_ids == {"1": None, "2": None, "3": None, "4": None, "5": None}


def test_real_records_in_an_official_zip_give_an_empty_map(tmp_path):
    """A real-records mirror file (not the official download): the zip member read like the build reads it."""
    if not os.path.isfile(REAL_IMAGE_DATA):
        pytest.skip(f"real data not available at {REAL_IMAGE_DATA} (set ARR_COC_REALDATA)")
    archive = tmp_path / vg.ARCHIVE
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(REAL_IMAGE_DATA, vg.MEMBER)
    assert decontamination.read_visual_genome(str(archive)) == ({}, frozenset({"1", "2", "3", "4", "5"}))
    # No image with a coco_id: never the official file, so leakage control refuses to run on it.
    with pytest.raises(SourceFormatError, match=rf"^{re.escape(str(archive))}:image_data.json: no image has a coco_id"):
        decontamination.read_photo_ids(str(archive), coco_annotations=str(archive))  # the map is checked before the COCO lists


def test_reader_on_generated_records_accepts_id_and_keeps_null(mirror):
    path, manifest = mirror
    with zipfile.ZipFile(os.path.join(str(path), vg.ARCHIVE)) as archive:
        raw = archive.read(vg.MEMBER)
    records = json.loads(raw)
    assert any("id" in r and "image_id" not in r for r in records) and any("image_id" in r for r in records)
    coco_ids = vg.read_coco_ids(io.BytesIO(raw), "image_data.json")
    expected = {"1": None, "2": None, "3": None}  # the real first records the generator quotes
    for split in SPLITS:
        expected.update(manifest["sources"]["gqa"][split]["coco_ids"])
    assert coco_ids == expected
    assert None in coco_ids.values() and any(value is not None for value in coco_ids.values())
    assert not any(image_id.startswith("n") for image_id in coco_ids)  # `n...` ids have no record


def test_reader_id_spellings_and_nulls():
    records = [{"id": 7, "coco_id": None}, {"image_id": 8, "coco_id": 248774}, {"image_id": "9", "coco_id": "12"}]
    assert vg.read_coco_ids(io.BytesIO(json.dumps(records).encode()), "f.json") == {"7": None, "8": "248774", "9": "12"}


@pytest.mark.parametrize(
    "records, where",
    [
        ([{"image_id": 1, "coco_id": None}, 5], "record [1]"),
        ([{"url": "x", "coco_id": None}], "record [0]"),
        ([{"image_id": 61512}], "record 61512"),
        ([{"image_id": 61512, "coco_id": "abc"}], "record 61512"),
        ([{"image_id": 61512, "coco_id": 1.5}], "record 61512"),
        ([{"image_id": 3, "coco_id": 1}, {"id": 3, "coco_id": 2}], "record 3"),
        ({"images": []}, "expected a list"),
    ],
)
def test_bad_records_are_one_line_errors_naming_file_and_record(records, where):
    with pytest.raises(SourceFormatError) as raised:
        vg.read_coco_ids(io.BytesIO(json.dumps(records).encode()), "image_data.json.zip:image_data.json")
    message = str(raised.value)
    assert message.startswith("image_data.json.zip:image_data.json") and where in message and "\n" not in message


def test_truncated_file_is_a_one_line_error():
    data = json.dumps([{"image_id": i, "coco_id": None} for i in range(100)]).encode()
    with pytest.raises(SourceFormatError, match=r"^image_data.json: invalid or truncated JSON after \d+ records"):
        vg.read_coco_ids(io.BytesIO(data[: len(data) // 2]), "image_data.json")


# -- the builder --------------------------------------------------------------------------------


def test_exactly_the_expected_images_are_skipped_and_the_invariant_holds(built, mirror):
    _, manifest = mirror
    builder, rows = built[True]
    stats = builder.build_stats()
    report = builder.decontamination_report()
    assert report["enabled"] is True
    for split in SPLITS:
        expected = manifest["sources"]["gqa"][split]
        overlap = expected["overlap"][REASON[split]]
        assert overlap, "the mirror must carry an overlap for this test to mean anything"
        got = stats["gqa"][split]
        assert got["skipped"] == {reason: n for reason, n in expected["expected_skipped"].items() if n}
        assert got["skipped"][REASON[split]] == 3 * len(overlap)
        assert got["items_selected"] == got["items_written"] + sum(got["skipped"].values())
        written = {row["metadata"]["image_id"] for row in rows[split] if source_of(row) == "gqa"}
        broken = set(expected["broken"]["missing_image"]) | set(expected["broken"]["corrupt_image"])
        assert written == set(expected["image_ids"]) - broken - set(overlap)
        assert report["removed"]["gqa"][split] == {"reason": REASON[split], "images": len(overlap), "items": 3 * len(overlap)}
        n_images = [image_id for image_id in expected["image_ids"] if image_id.startswith("n")]
        assert n_images and report["gqa_images_without_id_map"][split] == len(n_images)  # kept, not looked up, counted
        assert set(n_images) - broken <= written
        for source in ("vqav2", "okvqa", "coco"):  # split-clean by construction
            assert REASON[split] not in stats[source][split]["skipped"]
            assert report["removed"][source][split] == {"reason": REASON[split], "images": 0, "items": 0}


def test_report_names_the_files_and_their_counts(built, mirror):
    path, manifest = mirror
    report = built[True][0].decontamination_report()
    listed = coco_split_ids(path)
    mapped = {i: c for split in SPLITS for i, c in manifest["sources"]["gqa"][split]["coco_ids"].items() if c is not None}
    assert report["visual_genome_images_with_coco_id"] == len(mapped)
    assert report["files"] == {
        "image_data.json.zip/image_data.json": {"images": 3 + sum(len(manifest["sources"]["gqa"][s]["coco_ids"]) for s in SPLITS),
                                                "images_with_coco_id": len(mapped)},
        "annotations_trainval2014.zip/annotations/captions_train2014.json": {"image_ids": len(listed["train"])},
        "annotations_trainval2014.zip/annotations/captions_val2014.json": {"image_ids": len(listed["validation"])},
    }


def test_coco_id_is_right_on_every_row(built, mirror):
    _, manifest = mirror
    for enabled in (True, False):
        for split in SPLITS:
            coco_ids = manifest["sources"]["gqa"][split]["coco_ids"]
            for row in built[enabled][1][split]:
                meta = row["metadata"]
                assert list(meta)[:2] == ["image_id", "coco_id"]
                if source_of(row) == "gqa":
                    assert meta["coco_id"] == coco_ids.get(meta["image_id"]), row["id"]
                    if meta["image_id"].startswith("n"):
                        assert meta["coco_id"] is None
                else:
                    assert meta["coco_id"] == meta["image_id"], row["id"]


def test_no_photo_is_in_both_splits(built, mirror):
    path, _ = mirror
    listed = coco_split_ids(path)

    def photos(rows):
        return {row["metadata"]["coco_id"] for row in rows if row["metadata"]["coco_id"] is not None}

    on = built[True][1]
    assert not photos(on["train"]) & photos(on["validation"])
    assert not photos(on["train"]) & listed["validation"]  # no COCO val2014 photo in train
    assert not photos(on["validation"]) & listed["train"]
    off = built[False][1]
    assert photos(off["train"]) & photos(off["validation"])  # without the check the mirror does leak


def test_decontaminate_off_brings_those_rows_back_and_changes_nothing_else(built, mirror):
    _, manifest = mirror
    on_builder, on_rows = built[True]
    off_builder, off_rows = built[False]
    for split in SPLITS:
        overlap = set(manifest["sources"]["gqa"][split]["overlap"][REASON[split]])
        back = [row for row in off_rows[split] if source_of(row) == "gqa" and row["metadata"]["image_id"] in overlap]
        assert {row["metadata"]["image_id"] for row in back} == overlap
        assert [row for row in off_rows[split] if row not in back] == on_rows[split]  # same rows, same order
    on_stats, off_stats = on_builder.build_stats(), off_builder.build_stats()
    for source in SOURCE_NAMES:
        for split in SPLITS:
            on, off = dict(on_stats[source][split]), dict(off_stats[source][split])
            removed = on["skipped"].pop(REASON[split], 0)
            assert on["skipped"] == off["skipped"]
            assert off["items_written"] - on["items_written"] == removed
            assert (on["items_total"], on["items_selected"]) == (off["items_total"], off["items_selected"])
    report = off_builder.decontamination_report()
    assert report["enabled"] is False and report["gqa_images_without_id_map"] == {}
    assert list(report["files"]) == ["image_data.json.zip/image_data.json"]  # the map still gives coco_id
    assert all(entry["images"] == 0 for splits in report["removed"].values() for entry in splits.values())


def test_a_capped_build_keeps_the_same_images_minus_the_skipped(mirror, tmp_path):
    path, manifest = mirror
    written = {}
    for enabled in (True, False):
        builder = prepared(path, tmp_path / str(enabled), "small", max_images_train=6, max_images_validation=6,
                           sources=("gqa",), decontaminate=enabled)
        written[enabled] = {split: {row["metadata"]["image_id"] for row in raw_rows(builder.as_dataset()[split])} for split in SPLITS}
    for split in SPLITS:
        overlap = set(manifest["sources"]["gqa"][split]["overlap"][REASON[split]])
        assert written[True][split] == written[False][split] - overlap
        assert written[False][split] & overlap  # the cap keeps at least one overlapping image here


def test_streaming_gives_the_same_rows(built):
    builder, rows = built[True]
    streamed = builder.as_streaming_dataset()
    for split in SPLITS:
        assert raw_rows(streamed[split]) == rows[split]


def test_the_id_files_are_read_once_per_build_also_with_workers(mirror, built, tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    read = decontamination.read_visual_genome

    def counting(location, *pin):
        with open(calls, "a") as handle:  # a file, so that a call in a worker process would count too
            handle.write(f"{os.getpid()}\n")
        return read(location, *pin)

    monkeypatch.setattr(decontamination, "read_visual_genome", counting)
    builder = prepared(mirror[0], tmp_path / "cache", "full", num_proc=2)
    assert calls.read_text().count("\n") == 1
    dataset = builder.as_dataset()
    assert {split: raw_rows(dataset[split]) for split in SPLITS} == built[True][1]


# -- missing files ------------------------------------------------------------------------------


def mirror_without(mirror_path, tmp_path, name):
    copy = tmp_path / "mirror"
    copy.mkdir()
    for entry in os.listdir(str(mirror_path)):
        if entry != name:
            os.symlink(os.path.join(str(mirror_path), entry), copy / entry)
    return copy


@pytest.mark.parametrize("name", [vg.ARCHIVE, decontamination.COCO_ARCHIVE])
def test_a_missing_id_file_with_decontamination_on_is_one_line_naming_it(mirror, tmp_path, name):
    copy = mirror_without(mirror[0], tmp_path, name)
    builder = ArrCocVqa(config_name="small", data_dir=str(copy), cache_dir=str(tmp_path / "cache"), sources=("gqa",))
    with pytest.raises(FileNotFoundError) as raised:
        builder.download_and_prepare()
    message = str(raised.value)
    assert name in message and "--no-decontaminate" in message and "decontaminate=False" in message
    assert "\n" not in message


def test_a_missing_map_with_decontamination_off_builds_with_null_gqa_coco_ids(mirror, tmp_path):
    copy = mirror_without(mirror[0], tmp_path, vg.ARCHIVE)
    builder = prepared(copy, tmp_path / "cache", "small", sources=("gqa", "coco"), decontaminate=False)
    rows = raw_rows(builder.as_dataset()["train"])
    assert {row["metadata"]["coco_id"] for row in rows if source_of(row) == "gqa"} == {None}
    assert all(row["metadata"]["coco_id"] == row["metadata"]["image_id"] for row in rows if source_of(row) == "coco")
    assert builder.decontamination_report()["files"] == {}


def test_without_gqa_no_id_file_is_needed(mirror, tmp_path):
    copy = mirror_without(mirror[0], tmp_path, vg.ARCHIVE)
    builder = prepared(copy, tmp_path / "cache", "small", sources=("okvqa",))
    report = builder.decontamination_report()
    assert report["enabled"] is True and report["files"] == {} and report["visual_genome_images_with_coco_id"] is None
    assert all(row["metadata"]["coco_id"] == row["metadata"]["image_id"] for row in raw_rows(builder.as_dataset()["validation"]))


# -- incomplete id files -------------------------------------------------------------------------


def mirror_with(mirror_path, tmp_path, archive_name, member, data: bytes):
    """A copy of the mirror (links) whose `archive_name` has `member` replaced by `data` (or removed: None)."""
    copy = mirror_without(mirror_path, tmp_path, archive_name)
    with zipfile.ZipFile(os.path.join(str(mirror_path), archive_name)) as source, zipfile.ZipFile(copy / archive_name, "w") as target:
        for info in source.infolist():
            if info.filename != member:
                target.writestr(info, source.read(info))
            elif data is not None:
                target.writestr(info, data)
    return copy


def captions_without_images(mirror_path, split, images) -> bytes:
    member = f"annotations/captions_{split}.json"
    with zipfile.ZipFile(os.path.join(str(mirror_path), decontamination.COCO_ARCHIVE)) as archive:
        record = json.loads(archive.read(member))
    if images is None:
        del record["images"]
    else:
        record["images"] = images
    return json.dumps(record).encode()


def half_of_the_map(mirror_path) -> bytes:
    with zipfile.ZipFile(os.path.join(str(mirror_path), vg.ARCHIVE)) as archive:
        records = json.loads(archive.read(vg.MEMBER))
    return json.dumps(records[: len(records) // 2]).encode()


@pytest.mark.parametrize("case", ["map []", "half the map", "no coco_id", "val2014 images []", "train2014 no images"])
def test_leakage_control_never_runs_on_incomplete_id_files(mirror, tmp_path, capsys, case):
    path, _ = mirror
    coco_member = {"val2014 images []": "val2014", "train2014 no images": "train2014"}.get(case)
    if coco_member:
        member = f"annotations/captions_{coco_member}.json"
        data = captions_without_images(path, coco_member, [] if "[]" in case else None)
        copy, named = mirror_with(path, tmp_path, decontamination.COCO_ARCHIVE, member, data), f"{decontamination.COCO_ARCHIVE}:{member}"
    else:
        data = {"map []": b"[]", "half the map": half_of_the_map(path),
                "no coco_id": json.dumps([{"image_id": 1, "coco_id": None}]).encode()}[case]
        copy, named = mirror_with(path, tmp_path, vg.ARCHIVE, vg.MEMBER, data), f"{vg.ARCHIVE}:{vg.MEMBER}"
    repo = tmp_path / "repo"
    capsys.readouterr()
    assert build.main(["--config", "small", "--data-dir", str(copy), "--output-dir", str(repo), "--sources", "gqa"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0], errors
    if case == "half the map":
        assert "has no record of GQA image" in errors[0] and "--no-decontaminate" in errors[0]
    assert not (repo / "data").exists()
    # The switch still builds: the map, whatever it holds, only fills coco_id then.
    assert build.main(["--config", "small", "--data-dir", str(copy), "--output-dir", str(repo), "--sources", "gqa",
                       "--no-decontaminate"]) == 0


def test_every_decimal_gqa_id_of_the_generated_mirror_is_in_its_map(mirror):
    path, _ = mirror
    with zipfile.ZipFile(os.path.join(str(path), vg.ARCHIVE)) as archive:
        listed = set(vg.read_coco_ids(io.BytesIO(archive.read(vg.MEMBER)), vg.MEMBER))
    with zipfile.ZipFile(os.path.join(str(path), "questions1.2.zip")) as archive:
        for name in archive.namelist():
            if name.endswith(("train_balanced_questions.json", "val_balanced_questions.json")):
                ids = {record["imageId"] for record in json.loads(archive.read(name)).values()}
                assert {i for i in ids if i.isdigit()} <= listed, name


# -- scripts/build.py and load_dataset ----------------------------------------------------------


def test_build_flags_parse_as_bools():
    assert build.parse_args(["--config", "small"]).overrides == {}
    assert build.parse_args(["--config", "small", "--no-decontaminate"]).overrides == {"decontaminate": False}
    assert build.parse_args(["--config", "small", "--decontaminate"]).overrides == {"decontaminate": True}


def test_build_script_and_load_dataset_map_style_and_streaming(built, mirror, tmp_path_factory):
    path, manifest = mirror
    for enabled, flags in ((True, []), (False, ["--no-decontaminate"])):
        repo = tmp_path_factory.mktemp("repo")
        assert build.main(["--config", "small", "--data-dir", str(path), "--output-dir", str(repo), *flags]) == 0
        with open(os.path.join(str(repo), "data", "small", "build_report.json")) as handle:
            report = json.load(handle)
        decontaminated = report["decontamination"]
        assert decontaminated["enabled"] is enabled
        for split in SPLITS:
            overlap = manifest["sources"]["gqa"][split]["overlap"][REASON[split]]
            assert decontaminated["removed"]["gqa"][split]["images"] == (len(overlap) if enabled else 0)
            assert report["sources"]["gqa"][split]["skipped"].get(REASON[split], 0) == (3 * len(overlap) if enabled else 0)
            expected = built[enabled][1][split]  # `small` caps at 1,000 / 200 images: the whole mirror
            loaded = raw_rows(datasets.load_dataset(str(repo), "small", split=split))
            streamed = raw_rows(datasets.load_dataset(str(repo), "small", split=split, streaming=True))
            assert sorted(loaded, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
            assert streamed == loaded


def test_build_script_missing_map_is_one_line_and_nonzero(mirror, tmp_path):
    copy = mirror_without(mirror[0], tmp_path, vg.ARCHIVE)
    result = subprocess.run(
        [sys.executable, BUILD, "--config", "small", "--data-dir", str(copy), "--output-dir", str(tmp_path / "repo"),
         "--sources", "gqa"],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and vg.ARCHIVE in errors[0] and "--no-decontaminate" in errors[0]
    assert not os.path.exists(tmp_path / "repo" / "data")


def test_readme_coco_filter_snippet_removes_exactly_those_photos(built, mirror):
    without_photos = run_readme_snippets("coco_filter")["without_photos"]
    builder, rows = built[False]
    train = rows["train"]
    eval_ids = [int(i) for i in coco_split_ids(mirror[0])["validation"]]  # as a user reads them from a COCO file
    expected = [row["id"] for row in train if row["metadata"]["coco_id"] not in {str(i) for i in eval_ids}]
    assert len(expected) < len(train)  # the off build has GQA train rows with COCO val2014 photos
    filtered = without_photos(builder.as_dataset()["train"], eval_ids)
    streamed = without_photos(builder.as_streaming_dataset()["train"], eval_ids)
    assert [row["id"] for row in filtered] == expected
    assert [row["id"] for row in streamed] == expected
