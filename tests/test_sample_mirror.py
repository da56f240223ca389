"""Tests of scripts/make_sample_mirror.py: layout, formats, quirks, broken cases, manifest, determinism."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import make_sample_mirror as msm  # noqa: E402

OFFICIAL_JSON_MEMBERS = {
    "v2_Questions_Train_mscoco.zip": ["v2_OpenEnded_mscoco_train2014_questions.json"],
    "v2_Questions_Val_mscoco.zip": ["v2_OpenEnded_mscoco_val2014_questions.json"],
    "v2_Annotations_Train_mscoco.zip": ["v2_mscoco_train2014_annotations.json"],
    "v2_Annotations_Val_mscoco.zip": ["v2_mscoco_val2014_annotations.json"],
    "OpenEnded_mscoco_train2014_questions.json.zip": ["OpenEnded_mscoco_train2014_questions.json"],
    "OpenEnded_mscoco_val2014_questions.json.zip": ["OpenEnded_mscoco_val2014_questions.json"],
    "mscoco_train2014_annotations.json.zip": ["mscoco_train2014_annotations.json"],
    "mscoco_val2014_annotations.json.zip": ["mscoco_val2014_annotations.json"],
    "questions1.2.zip": [
        "train_all_questions/train_all_questions_0.json", "train_all_questions/train_all_questions_1.json",
        "train_balanced_questions.json", "val_all_questions.json", "val_balanced_questions.json",
        "testdev_balanced_questions.json", "test_balanced_questions.json", "challenge_balanced_questions.json"],
    "annotations_trainval2014.zip": [
        "annotations/instances_train2014.json", "annotations/instances_val2014.json",
        "annotations/person_keypoints_train2014.json", "annotations/person_keypoints_val2014.json",
        "annotations/captions_train2014.json", "annotations/captions_val2014.json"],
    "image_data.json.zip": ["image_data.json"],
}
IMAGE_ZIP_PATTERNS = {
    "images.zip": ("images/", re.compile(r"images/n?\d+\.jpg")),
    "train2014.zip": ("train2014/", re.compile(r"train2014/COCO_train2014_\d{12}\.jpg")),
    "val2014.zip": ("val2014/", re.compile(r"val2014/COCO_val2014_\d{12}\.jpg")),
}
ALL_FILES = set(OFFICIAL_JSON_MEMBERS) | set(IMAGE_ZIP_PATTERNS)
SPLIT_SUB = {"train": "train2014", "validation": "val2014"}
GQA_MEMBER = {"train": "train_balanced_questions.json", "validation": "val_balanced_questions.json"}
VQAV2_MEMBERS = {split: (msm.VQAV2_FILES[("questions", split)], msm.VQAV2_FILES[("annotations", split)]) for split in msm.SPLITS}
OKVQA_MEMBERS = {split: (msm.OKVQA_FILES[("questions", split)], msm.OKVQA_FILES[("annotations", split)]) for split in msm.SPLITS}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirror")
    manifest = msm.write_sample_mirror(out)
    return out, manifest


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(directory: Path) -> dict:
    return {p.name: _sha(p) for p in sorted(directory.iterdir())}


def _json(directory: Path, zip_name: str, member: str):
    with zipfile.ZipFile(directory / zip_name) as zf:
        return json.loads(zf.read(member))


def _decode_status(zf: zipfile.ZipFile, member: str) -> str:
    """"missing", "corrupt", or the decoded image's kind ("PNG" for PNG data, else the JPEG's mode)."""
    if member not in zf.namelist():
        return "missing"
    data = zf.read(member)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return "PNG" if image.format == "PNG" else image.mode
    except OSError:
        return "corrupt"


# ------------------------------------------------------------------------------------------------ determinism
def test_same_seed_is_byte_identical_also_via_cli(mirror, tmp_path):
    out, manifest = mirror
    again = tmp_path / "again"
    msm.write_sample_mirror(again)
    assert _hashes(again) == _hashes(out)
    # the CLI, in another interpreter with another hash seed, gives the same bytes
    cli = tmp_path / "cli"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_sample_mirror.py"), str(cli)], check=True, env=env,
                   capture_output=True)
    assert _hashes(cli) == _hashes(out)
    # the manifest's file table is right
    assert set(manifest["files"]) == ALL_FILES
    for name, entry in manifest["files"].items():
        assert entry == {"bytes": (out / name).stat().st_size, "sha256": _sha(out / name)}


def test_different_seed_changes_every_file(mirror, tmp_path):
    out, _ = mirror
    other = msm.write_sample_mirror(tmp_path, seed=1)
    base = _hashes(out)
    for name in ALL_FILES:
        assert other["files"][name]["sha256"] != base[name], name


# ------------------------------------------------------------------------------------------------ layout
def test_every_official_file_with_exact_members(mirror):
    out, _ = mirror
    assert {p.name for p in out.iterdir()} == ALL_FILES | {msm.MANIFEST_NAME}
    for zip_name, members in OFFICIAL_JSON_MEMBERS.items():
        with zipfile.ZipFile(out / zip_name) as zf:
            infos = zf.infolist()
            assert [i.filename for i in infos] == members, zip_name
            for info in infos:
                assert info.compress_type == zipfile.ZIP_DEFLATED
                assert info.date_time == msm.ZIP_DATE_TIME
                json.loads(zf.read(info))  # every member is valid JSON
    for zip_name, (folder, pattern) in IMAGE_ZIP_PATTERNS.items():
        with zipfile.ZipFile(out / zip_name) as zf:
            infos = zf.infolist()
            assert infos[0].filename == folder and infos[0].is_dir()
            names = [i.filename for i in infos[1:]]
            assert names and all(pattern.fullmatch(n) for n in names), names
            assert names == sorted(names) and len(set(names)) == len(names)
            assert all(i.compress_type == zipfile.ZIP_STORED and i.date_time == msm.ZIP_DATE_TIME for i in infos)


@pytest.mark.parametrize("sources, expected", [
    (("okvqa",), {"OpenEnded_mscoco_train2014_questions.json.zip", "OpenEnded_mscoco_val2014_questions.json.zip",
                  "mscoco_train2014_annotations.json.zip", "mscoco_val2014_annotations.json.zip",
                  "train2014.zip", "val2014.zip"}),
    # GQA's leakage control needs Visual Genome's id map and COCO's image lists
    (("gqa",), {"questions1.2.zip", "images.zip", "image_data.json.zip", "annotations_trainval2014.zip"}),
    (("coco",), {"annotations_trainval2014.zip", "train2014.zip", "val2014.zip"}),
])
def test_only_the_requested_sources_files(tmp_path, sources, expected):
    manifest = msm.write_sample_mirror(tmp_path, sources=sources)
    assert {p.name for p in tmp_path.iterdir()} == expected | {msm.MANIFEST_NAME}
    assert set(manifest["files"]) == expected
    assert set(manifest["sources"]) == set(sources)


# ------------------------------------------------------------------------------------------------ VQAv2
def test_vqav2_format_and_quirks(mirror):
    out, manifest = mirror
    seen_types = set()
    for split in msm.SPLITS:
        (qzip, qmember), (azip, amember) = VQAV2_MEMBERS[split]
        questions = _json(out, qzip, qmember)
        annotations = _json(out, azip, amember)
        assert {"info", "task_type", "data_type", "data_subtype", "license", "questions"} <= set(questions)
        assert {"info", "data_type", "data_subtype", "license", "annotations"} <= set(annotations)
        assert questions["task_type"] == "Open-Ended" and questions["data_subtype"] == SPLIT_SUB[split]
        qids = [q["question_id"] for q in questions["questions"]]
        assert qids != sorted(qids)  # out of question_id order
        for q in questions["questions"]:
            assert q["question_id"] // 1000 == q["image_id"]
        by_id = {a["question_id"]: a for a in annotations["annotations"]}
        for a in annotations["annotations"]:
            assert sorted(x["answer_id"] for x in a["answers"]) == list(range(1, 11))
            assert set(a) == {"question_type", "multiple_choice_answer", "answers", "image_id", "answer_type", "question_id"}
            assert {x["answer_confidence"] for x in a["answers"]} <= {"yes", "maybe", "no"}
            seen_types.add(a["answer_type"])
        quirks = manifest["quirks"]["vqav2"]
        for qid in quirks["answers0_differs_from_mca"][split]:
            assert by_id[qid]["answers"][0]["answer"] != by_id[qid]["multiple_choice_answer"]
        for qid in quirks["answer_ids_listed_shuffled"][split]:
            ids = [x["answer_id"] for x in by_id[qid]["answers"]]
            assert ids != sorted(ids)
        assert quirks["answers0_differs_from_mca"][split] and quirks["answer_ids_listed_shuffled"][split]
    assert seen_types == {"yes/no", "number", "other"}
    # real records from the reference
    questions = _json(out, *VQAV2_MEMBERS["train"][0])["questions"]
    annotations = {a["question_id"]: a for a in _json(out, *VQAV2_MEMBERS["train"][1])["annotations"]}
    assert questions[0] == {"image_id": 458752, "question": "What is this photo taken looking through?", "question_id": 458752000}
    assert annotations[458752000]["multiple_choice_answer"] == "net"
    assert annotations[393714000]["answers"][0]["answer"] == "light blue"
    assert annotations[393714000]["multiple_choice_answer"] == "white"
    texts = {q["question_id"]: q["question"] for q in questions}
    assert texts[263006000] == "How many people are pictured?" and texts[263006001] == "What color is the water?"


# ------------------------------------------------------------------------------------------------ OK-VQA
def test_okvqa_format_and_quirks(mirror):
    out, manifest = mirror
    positions = {}
    for split in msm.SPLITS:
        (qzip, qmember), (azip, amember) = OKVQA_MEMBERS[split]
        with zipfile.ZipFile(out / azip) as zf:
            text = zf.read(amember).decode()
        positions[split] = text.index('"question_types"') < text.index('"annotations"')
        annotations = json.loads(text)
        questions = _json(out, qzip, qmember)
        assert questions["task_type"] == "Open-Ended" and questions["data_subtype"] == SPLIT_SUB[split]
        type_map = annotations["question_types"]
        assert type_map == msm.OKVQA_QUESTION_TYPES
        by_id = {a["question_id"]: a for a in annotations["annotations"]}
        for a in annotations["annotations"]:
            assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
            assert all({"raw_answer", "answer", "answer_confidence"} <= set(x) for x in a["answers"])
            assert {x["answer_confidence"] for x in a["answers"]} <= {"yes", "no"}
            assert isinstance(a["confidence"], int) and "multiple_choice_answer" not in a
        for q in questions["questions"]:
            assert q["question_id"] // 10 == q["image_id"]
        quirks = manifest["quirks"]["okvqa"]
        for qid in quirks["majority_tie_first_wins"][split]:
            texts = [x["answer"] for x in by_id[qid]["answers"]]
            counts = Counter(texts).most_common()
            assert counts[0][1] == counts[1][1] == 4  # a tie between two answers
            tied = {counts[0][0], counts[1][0]}
            assert texts[0] in tied and sorted(tied)[0] != texts[0]  # first wins, alphabetical would not
        for qid in quirks["question_type_not_in_map"][split]:
            assert by_id[qid]["question_type"] not in type_map
        assert quirks["majority_tie_first_wins"][split] and quirks["question_type_not_in_map"][split]
    assert positions["train"] != positions["validation"]  # question_types before annotations in one split only
    train_q = {q["question_id"]: q for q in _json(out, *OKVQA_MEMBERS["train"][0])["questions"]}
    assert train_q[516065] == {"image_id": 51606, "question": "What is the hairstyle of the blond called?", "question_id": 516065}
    assert {817215, 4802085} <= set(train_q)


# ------------------------------------------------------------------------------------------------ GQA
def test_gqa_format_and_quirks(mirror):
    out, manifest = mirror
    with zipfile.ZipFile(out / "questions1.2.zip") as zf:
        files = {name: json.loads(zf.read(name)) for name in zf.namelist()}
    for split, member in GQA_MEMBER.items():
        data = files[member]
        assert isinstance(data, dict)
        assert all(re.fullmatch(r"\d{8}", k) for k in data)
        assert any(k.startswith("0") for k in data)
        assert any(r["imageId"].startswith("n") for r in data.values())
        assert any(r["groups"]["global"] is None for r in data.values())
        assert any(":" in key for r in data.values() for part in r["annotations"].values() for key in part)
        for record in data.values():
            assert {"imageId", "question", "answer", "fullAnswer", "isBalanced", "semantic", "semanticStr", "types",
                    "groups", "entailed", "equivalent", "annotations"} == set(record)
            assert record["isBalanced"] is True
        assert len(json.dumps(data)) / len(data) > 600  # full-size records
    assert files["train_balanced_questions.json"]["02930152"] == msm.GQA_REAL_TRAIN[1]
    parrot = files["val_balanced_questions.json"]["05515938"]
    assert parrot["imageId"] == "2405722" and parrot["answer"] == "parrot"
    # decoys: other ids than the balanced files; test records have only three fields
    balanced = set(files["train_balanced_questions.json"]) | set(files["val_balanced_questions.json"])
    for name in ("test_balanced_questions.json", "challenge_balanced_questions.json"):
        assert files[name] and all(set(r) == {"imageId", "question", "isBalanced"} for r in files[name].values())
    assert any(not r["isBalanced"] for r in files["train_all_questions/train_all_questions_0.json"].values())
    assert not set(files["testdev_balanced_questions.json"]) & balanced


# ------------------------------------------------------------------------------------------------ COCO
def test_coco_captions_format_and_quirks(mirror):
    out, manifest = mirror
    for split in msm.SPLITS:
        sub = SPLIT_SUB[split]
        data = _json(out, "annotations_trainval2014.zip", f"annotations/captions_{sub}.json")
        assert set(data) == {"info", "images", "licenses", "annotations"}
        assert data["info"]["description"] == "COCO 2014 Dataset" and len(data["licenses"]) == 8
        images = {i["id"]: i for i in data["images"]}
        assert set(next(iter(images.values()))) == {"license", "file_name", "coco_url", "height", "width",
                                                  "date_captured", "flickr_url", "id"}
        ids = [a["id"] for a in data["annotations"]]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        image_seq = [a["image_id"] for a in data["annotations"]]
        runs = sum(1 for a, b in zip(image_seq, image_seq[1:]) if a != b) + 1
        assert runs >= 2 * len(set(image_seq))  # not grouped by image: images' captions interleave
        assert set(image_seq) == set(images)
        per_image = Counter(image_seq)
        assert min(per_image.values()) >= 5 and max(per_image.values()) > 5
        captions = [a["caption"] for a in data["annotations"]]
        assert any("\n" in c for c in captions)
        assert any("  " in c.strip() for c in captions)
        assert any(c != c.strip(" ") for c in captions)
        with zipfile.ZipFile(out / f"{sub}.zip") as zf:
            for image in images.values():
                assert image["file_name"] == f"COCO_{sub}_{image['id']:012d}.jpg"
                member = f"{sub}/{image['file_name']}"
                if member in zf.namelist():
                    with Image.open(io.BytesIO(zf.read(member))) as decoded:
                        assert decoded.size == (image["width"], image["height"])
    val = _json(out, "annotations_trainval2014.zip", "annotations/captions_val2014.json")
    assert val["annotations"][0] == {"image_id": 203564, "id": 37, "caption": "A bicycle replica with a clock as the front wheel."}
    assert val["images"][0]["id"] == 391895
    train = _json(out, "annotations_trainval2014.zip", "annotations/captions_train2014.json")
    assert train["annotations"][0] == {"image_id": 318556, "id": 48, "caption": "A very clean and well decorated empty bathroom"}
    assert [(a["id"], a["image_id"]) for a in train["annotations"][:4]] == [(48, 318556), (67, 116100), (126, 318556), (148, 116100)]


# ------------------------------------------------------------------------------------------------ images
def test_images_decode_except_the_truncated_one(mirror):
    out, manifest = mirror
    for zip_name in IMAGE_ZIP_PATTERNS:
        with zipfile.ZipFile(out / zip_name) as zf:
            kinds = {}
            for name in zf.namelist():
                if name.endswith("/"):
                    continue
                data = zf.read(name)
                with Image.open(io.BytesIO(data)) as image:  # the header of every file parses ...
                    image_format = image.format
                kinds[name] = _decode_status(zf, name)   # ... but the truncated one fails to load
                if kinds[name] == "corrupt":
                    assert image_format == "JPEG" and data[:2] == b"\xff\xd8" and not data.endswith(b"\xff\xd9")
            values = Counter(kinds.values())
            assert values["corrupt"] == (2 if zip_name == "images.zip" else 1)  # one per split
            assert {"RGB", "L", "CMYK", "PNG"} <= set(values)
    # per split and image zip, the manifest's modes are the real ones
    for source, splits in manifest["sources"].items():
        for split, entry in splits.items():
            with zipfile.ZipFile(out / entry["image_archive"]) as zf:
                for image_id, mode in entry["image_modes"].items():
                    member = _member(source, split, image_id)
                    status = _decode_status(zf, member)
                    assert status == ("corrupt" if image_id in entry["broken"]["corrupt_image"] else mode)
    for split in msm.SPLITS:  # each split of each image zip has an L, a CMYK and a PNG image
        gqa = set(manifest["sources"]["gqa"][split]["image_modes"].values())
        coco = set().union(*(set(manifest["sources"][s][split]["image_modes"].values()) for s in ("vqav2", "okvqa", "coco")))
        assert {"L", "CMYK", "PNG"} <= gqa and {"L", "CMYK", "PNG"} <= coco


def _member(source: str, split: str, image_id: str) -> str:
    if source == "gqa":
        return f"images/{image_id}.jpg"
    sub = SPLIT_SUB[split]
    return f"{sub}/COCO_{sub}_{int(image_id):012d}.jpg"


# ------------------------------------------------------------------------------------------------ manifest
def _crossing_gqa_images(out: Path, split: str) -> set:
    """GQA imageIds of `split` whose Visual Genome coco_id is a COCO photo of the other split."""
    records = _json(out, "image_data.json.zip", "image_data.json")
    other = {"train": "val2014", "validation": "train2014"}[split]
    other_ids = {i["id"] for i in _json(out, "annotations_trainval2014.zip", f"annotations/captions_{other}.json")["images"]}
    return {str(r.get("image_id", r.get("id"))) for r in records if r["coco_id"] in other_ids}


def _recount(out: Path, source: str, split: str, archive: str) -> dict:
    """Count items and skips from the files themselves, with the builder's skip rules."""
    skipped = Counter({"missing_image": 0, "corrupt_image": 0, "no_annotation": 0})
    broken = {"missing_image": set(), "corrupt_image": set(), "no_annotation": set()}
    with zipfile.ZipFile(out / archive) as zf:
        status_cache = {}

        def status(image_id):
            if image_id not in status_cache:
                status_cache[image_id] = _decode_status(zf, _member(source, split, image_id))
            return status_cache[image_id]

        def image_problem(image_id):
            s = status(image_id)
            return {"missing": "missing_image", "corrupt": "corrupt_image"}.get(s)

        if source in ("vqav2", "okvqa"):
            members = VQAV2_MEMBERS[split] if source == "vqav2" else OKVQA_MEMBERS[split]
            questions = {q["question_id"]: str(q["image_id"]) for q in _json(out, *members[0])["questions"]}
            annotations = {a["question_id"]: str(a["image_id"]) for a in _json(out, *members[1])["annotations"]}
            image_ids = list(dict.fromkeys(list(questions.values()) + list(annotations.values())))
            items = set(questions) | set(annotations)
            for qid in items:
                if qid not in questions or qid not in annotations:
                    reason = "no_annotation"
                    broken[reason].add(str(qid))
                else:
                    reason = image_problem(questions[qid])
                    if reason:
                        broken[reason].add(questions[qid])
                if reason:
                    skipped[reason] += 1
            total = len(items)
        elif source == "gqa":
            data = _json(out, "questions1.2.zip", GQA_MEMBER[split])
            image_ids = list(dict.fromkeys(r["imageId"] for r in data.values()))
            crossing = _crossing_gqa_images(out, split)
            overlap_reason = msm.OVERLAP_REASON[split]
            skipped[overlap_reason] = 0
            for record in data.values():
                # the builder's order: leakage control before fetching the image
                reason = overlap_reason if record["imageId"] in crossing else image_problem(record["imageId"])
                if reason == overlap_reason:
                    skipped[reason] += 1
                elif reason:
                    skipped[reason] += 1
                    broken[reason].add(record["imageId"])
            total = len(data)
        else:
            data = _json(out, "annotations_trainval2014.zip", f"annotations/captions_{SPLIT_SUB[split]}.json")
            image_ids = [str(i["id"]) for i in data["images"]]
            for image_id in image_ids:
                reason = image_problem(image_id)
                if reason:
                    skipped[reason] += 1
                    broken[reason].add(image_id)
            total = len(image_ids)
    return {"items_total": total, "expected_skipped": dict(skipped), "image_ids": set(image_ids),
            "broken": {k: sorted(v) for k, v in broken.items()}}


@pytest.mark.parametrize("broken", [True, False])
def test_manifest_counts_match_the_files(mirror, tmp_path, broken):
    if broken:
        out, manifest = mirror
    else:
        out, manifest = tmp_path, msm.write_sample_mirror(tmp_path, broken=False, images_per_split=4)
    assert json.loads((out / msm.MANIFEST_NAME).read_text()) == manifest
    assert set(manifest["sources"]) == set(msm.SOURCES)
    for source, splits in manifest["sources"].items():
        for split, entry in splits.items():
            assert entry["original_split"] == (msm.GQA_SUB if source == "gqa" else msm.COCO_SUB)[split]
            counted = _recount(out, source, split, entry["image_archive"])
            assert counted["items_total"] == entry["items_total"], (source, split)
            assert counted["expected_skipped"] == entry["expected_skipped"], (source, split)
            assert counted["image_ids"] == set(entry["image_ids"]), (source, split)
            assert len(entry["image_ids"]) == len(set(entry["image_ids"])) == manifest["params"]["images"][source][split]
            assert counted["broken"] == {k: sorted(v) for k, v in entry["broken"].items()}, (source, split)
            if broken:  # one of each broken case per source and split
                assert entry["expected_skipped"]["missing_image"] > 0 and entry["expected_skipped"]["corrupt_image"] > 0
                assert entry["expected_skipped"]["no_annotation"] == (1 if source in ("vqav2", "okvqa") else 0)
            else:  # overlaps are a property of the data, not a broken case
                assert {n for r, n in entry["expected_skipped"].items() if r not in msm.OVERLAP_REASON.values()} == {0}
            if source == "gqa":  # every GQA mirror carries at least one photo of the other split
                assert entry["expected_skipped"][msm.OVERLAP_REASON[split]] > 0


def test_image_count_override_keeps_ids_stable(mirror, tmp_path):
    _, small = mirror
    big = msm.write_sample_mirror(tmp_path, images={"gqa": 25, "coco": {"train": 9, "validation": 7}},
                                  sources=("gqa", "coco"))
    for split in msm.SPLITS:
        ids = big["sources"]["gqa"][split]["image_ids"]
        assert len(ids) == len(set(ids)) == 25
        assert ids[:6] == small["sources"]["gqa"][split]["image_ids"]  # a bigger mirror extends a smaller one
    assert len(big["sources"]["coco"]["train"]["image_ids"]) == 9
    assert len(big["sources"]["coco"]["validation"]["image_ids"]) == 7
    assert not set(big["sources"]["gqa"]["train"]["image_ids"]) & set(big["sources"]["gqa"]["validation"]["image_ids"])


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        msm.main([str(tmp_path), "--image-size", "64by48"])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        msm.main([str(tmp_path), "--sources", "vqav2,imagenet"])
    assert msm.main([str(tmp_path), "--sources", "coco", "--coco-images", "3", "--no-broken", "--seed", "4"]) == 0
    manifest = json.loads((tmp_path / msm.MANIFEST_NAME).read_text())
    assert manifest["seed"] == 4 and manifest["params"]["broken"] is False
    assert len(manifest["sources"]["coco"]["train"]["image_ids"]) == 3


def test_several_image_sizes_one_per_image_id(mirror, tmp_path):
    """--image-sizes: each image one of the sizes, the same one wherever its id appears, COCO's image lists saying
    so; one size gives the bytes of --image-size (only the manifest's params differ)."""
    sizes = [(80, 60), (40, 90), (120, 33)]
    out = tmp_path / "sizes"
    assert msm.main([str(out), "--image-sizes", ",".join(f"{w}x{h}" for w, h in sizes)]) == 0
    manifest = json.loads((out / msm.MANIFEST_NAME).read_text())
    assert manifest["params"]["image_sizes"] == [list(size) for size in sizes]
    seen = {}
    for zip_name in IMAGE_ZIP_PATTERNS:
        with zipfile.ZipFile(out / zip_name) as zf:
            for name in zf.namelist():
                if not name.endswith("/"):
                    with Image.open(io.BytesIO(zf.read(name))) as image:
                        seen[name] = image.size
    assert set(seen.values()) == set(sizes)
    listed = 0
    for split, sub in SPLIT_SUB.items():
        for entry in _json(out, "annotations_trainval2014.zip", f"annotations/captions_{sub}.json")["images"]:
            member = f"{sub}/COCO_{sub}_{entry['id']:012d}.jpg"
            if member in seen:
                listed += 1
                assert (entry["width"], entry["height"]) == seen[member]
    assert listed > 4
    one = tmp_path / "one"
    msm.write_sample_mirror(one, image_sizes=[(64, 48)])
    default, single = _hashes(mirror[0]), _hashes(one)
    assert {name: digest for name, digest in single.items() if name != msm.MANIFEST_NAME} == \
        {name: digest for name, digest in default.items() if name != msm.MANIFEST_NAME}
