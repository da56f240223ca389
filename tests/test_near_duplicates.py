"""The near-duplicate audit (DESIGN.md, "Near duplicates"): the vectorised comparison against a brute-force one,
a mirror with planted re-hosted copies (exactly those pairs, skipped with counts under near_duplicate_distance),
the same with real photos (no false pair among distinct real photos), the `n...` part over a remote archive,
and the card's `near_duplicate_filter` snippet, map-style and streaming."""

import io
import json
import os
import zipfile

import datasets
import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, SPLITS, ArrCocVqa, make_mirror, prepared, raw_rows, run_readme_snippets
from range_server import FileServer
from test_phash import REAL_PHOTOS, REALDATA, needs_realdata
from arr_coc.pipeline import inputs, near_duplicates
from arr_coc.pipeline.inputs import GENERATION_ORDER
from arr_coc.schema import SOURCES
from arr_coc.pipeline.near_duplicates import EVAL_REASON, TRAIN_REASON, scan
import build as build_script  # scripts/build.py
from sample_mirror.near_duplicates import rehost

QUESTIONS = 3
DISTANCE = 8
FAMILY = ("vqav2", "okvqa", "coco")


# -- the comparison --------------------------------------------------------------------------------------


def brute_force(left, right, evaluation, distance):
    pairs = sorted(((int(a) ^ int(b)).bit_count(), i, j) for i, a in enumerate(left) for j, b in enumerate(right))
    near = [pair for pair in pairs if pair[0] <= near_duplicates.MAX_REPORTED_DISTANCE]
    left_skip = {i for d, i, j in pairs if d <= distance and evaluation[j]}
    right_skip = {j for d, i, j in pairs if d <= distance and not evaluation[j] and i not in left_skip}
    return near, left_skip, right_skip


@pytest.mark.parametrize("rows,elements", [(1, 1), (3, 21), (32, 1 << 18)])  # tiles of 1x1, 3x7, all at once
def test_the_vectorised_scan_finds_what_a_brute_force_one_finds(monkeypatch, rows, elements):
    monkeypatch.setattr(near_duplicates, "BLOCK_ROWS", rows)
    monkeypatch.setattr(near_duplicates, "BLOCK_ELEMENTS", elements)
    rng = np.random.default_rng(3)
    left = rng.integers(0, 2**63, 40, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 40, dtype=np.uint64)
    right = rng.integers(0, 2**63, 30, dtype=np.uint64)
    for i, j, flips in ((0, 0, 0), (5, 3, 3), (7, 4, 9), (9, 20, 11), (12, 29, 6), (33, 11, 2)):  # planted near pairs
        bits = rng.choice(64, flips, replace=False)
        right[j] = left[i] ^ np.uint64(sum(1 << int(b) for b in bits))
    evaluation = np.arange(30) % 2 == 0
    near, left_skip, right_skip = brute_force(left, right, evaluation, DISTANCE)
    result = scan(left, right, evaluation, np.zeros(30, dtype=np.int64), DISTANCE)
    assert [tuple(map(int, row)) for row in result.closest] == near and len(near) >= 5
    assert result.counts[0].tolist() == [sum(d == k for d, _, _ in near) for k in range(11)]
    assert set(np.flatnonzero(result.left_skip)) == left_skip and set(np.flatnonzero(result.right_skip)) == right_skip
    assert right_skip  # an odd (validation) partner of a kept train image


def test_a_file_is_never_its_own_pair_and_the_list_keeps_the_closest_1000(monkeypatch):
    monkeypatch.setattr(near_duplicates, "MAX_LISTED_PAIRS", 5)
    monkeypatch.setattr(near_duplicates, "BLOCK_ROWS", 2)  # self pairs in several tiles
    monkeypatch.setattr(near_duplicates, "BLOCK_ELEMENTS", 4)
    left = np.array([1, 2, 3], dtype=np.uint64)
    right = np.array([1, 2, 3, 7], dtype=np.uint64)
    result = scan(left, right, np.ones(4, bool), np.zeros(4, dtype=np.int64), None, (np.array([0, 1, 2]), np.array([0, 1, 2])))
    listed = [tuple(map(int, row)) for row in result.closest]
    assert all(i != j for _, i, j in listed) and len(listed) == 5
    assert listed == sorted(listed) and listed[0][0] == 1  # 1^3, 2^3, 3^2, ... : no distance-0 self pair
    assert not result.left_skip.any() and result.counts.sum() == 9  # every pair counted, the 3 self pairs not


def test_a_file_is_not_its_own_pair_at_distance_64_either():
    """64 bits is the largest distance there is and near_duplicate_distance may be 64: a file's pair with itself must
    still not count (it did, marked 64 bits apart), whichever side it would skip."""
    same = np.array([5], dtype=np.uint64)
    for evaluation in (True, False):
        result = scan(same, same, np.array([evaluation]), np.zeros(1, dtype=np.int64), 64, (np.array([0]), np.array([0])))
        assert not result.left_skip.any() and not result.right_skip.any() and result.counts.sum() == 0


def test_a_gqa_n_image_among_the_validation_images_is_an_evaluation_photo():
    """DESIGN: in a pair of a train image and an `n...` image, the train image goes (eval_near_duplicate), also when
    that `n...` photo is one of the validation images written (and so compared there, not in the n... part)."""
    def hashed(split, image_id, phash):
        return dict(source="gqa", split=split, image_id=image_id, file=f"images/{image_id}.jpg", phash=phash, items=2,
                    rows=1, answer_counts={})  # fmt: skip
    written = [hashed("train", "1", "00000000000000ff"), hashed("validation", "n5", "00000000000000fe"),
               hashed("validation", "7", "f0f0f0f0f0f0f0f0")]  # fmt: skip
    n_images = near_duplicates.NImages(listed=1, records=[dict(written[1], split=near_duplicates.N_IMAGES_SPLIT)])
    result = near_duplicates.audit(written, n_images, DISTANCE, progress=False)
    assert result.skipped == {"gqa": {"train": {EVAL_REASON: {"images": 1, "items": 2, "rows": 1}}}}
    assert result.dropped_rows == {"gqa/train_balanced/1"}


# -- a mirror with planted re-hosted copies ----------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    path = tmp_path_factory.mktemp("planted")
    manifest = make_mirror(path, images_per_split=8, questions_per_image=QUESTIONS, image_size=(160, 120), near_duplicates=True)
    return path, manifest


@pytest.fixture(scope="module")
def audited(planted, tmp_path_factory):
    return prepared(planted[0], tmp_path_factory.mktemp("cache"), "full")


def pair_ids(report) -> set:
    return {(pair["train"]["image_id"], pair["other"]["image_id"]) for pair in report["closest_pairs"]}


def planted_pairs(manifest) -> set:
    pairs = set()
    for entry in manifest["near_duplicates"]:
        copy, original = entry["copy"], entry["original"]
        train, other = (copy, original) if copy["split"] == "train" else (original, copy)
        pairs.add((train["image_id"], other["image_id"]))
    return pairs


def expected_skips(manifest) -> dict:
    """{(source, split): {reason: items}} of the planted images, from the manifest's own lists."""
    expected = {}
    for entry in manifest["near_duplicates"]:
        image = entry["skipped"]
        for source in ("gqa",) if image["family"] == "gqa" else FAMILY:
            if image["image_id"] not in manifest["sources"][source][image["split"]]["image_ids"]:
                continue
            items = {"gqa": QUESTIONS, "vqav2": QUESTIONS, "okvqa": 1, "coco": 1}[source]
            into = expected.setdefault((source, image["split"]), {})
            into[entry["reason"]] = into.get(entry["reason"], 0) + items
    return expected


def test_the_audit_lists_exactly_the_planted_pairs(audited, planted):
    report = audited.near_duplicates_report()
    assert pair_ids(report) == planted_pairs(planted[1]) and len(planted[1]["near_duplicates"]) == 4
    assert all(pair["distance"] <= DISTANCE for pair in report["closest_pairs"])
    comparisons = report["comparisons"]
    assert sum(comparisons["train_vs_validation"]["pairs_by_distance"].values()) == 2
    assert sum(comparisons["train_vs_gqa_n_images"]["pairs_by_distance"].values()) == 2
    assert comparisons["train_vs_gqa_n_images"]["audited"] and comparisons["train_vs_gqa_n_images"]["unreadable"] == 0
    assert report["distance"] is None and report["removed"] == {}
    by_id = {pair["other"]["image_id"]: pair for pair in report["closest_pairs"]}
    n_pair = next(pair for other, pair in by_id.items() if other.startswith("n"))
    assert n_pair["other"] == {"image_id": n_pair["other"]["image_id"], "sources": ["gqa"], "split": "testdev/test/challenge"}


def test_report_only_changes_no_row(audited, planted):
    stats = audited.build_stats()
    for (source, split), reasons in expected_skips(planted[1]).items():
        assert not set(reasons) & set(stats[source][split]["skipped"])


@pytest.fixture(scope="module")
def skipping_repo(planted, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    args = ["--config", "full", "--data-dir", str(planted[0]), "--output-dir", str(repo), "--num-proc", "2",
            "--near-duplicate-distance", str(DISTANCE)]  # fmt: skip
    assert build_script.main(args) == 0
    with open(os.path.join(repo, "data", "full", "build_report.json")) as handle:
        return repo, json.load(handle)


def test_near_duplicate_distance_skips_them_with_counts(skipping_repo, planted, audited):
    repo, report = skipping_repo
    expected = expected_skips(planted[1])
    assert {reason for reasons in expected.values() for reason in reasons} == {EVAL_REASON, TRAIN_REASON}
    before = audited.build_stats()
    for source, splits in report["sources"].items():
        for split, stats in splits.items():
            wanted = expected.get((source, split), {})
            assert {r: n for r, n in stats["skipped"].items() if r in (EVAL_REASON, TRAIN_REASON)} == wanted
            assert stats["items_written"] == before[source][split]["items_written"] - sum(wanted.values())
    assert pair_ids(report["near_duplicates"]) == planted_pairs(planted[1]) and report["near_duplicates"]["distance"] == DISTANCE
    removed = report["near_duplicates"]["removed"]
    assert {(source, split): {reason: counts["items"] for reason, counts in reasons.items()}
            for source, splits in removed.items() for split, reasons in splits.items()} == expected  # fmt: skip
    # A skipped VQAv2/OK-VQA image's questions leave the answer_counts histogram with it (written or low_agreement).
    assert any("answer_counts" in counts for splits in removed.values() for reasons in splits.values() for counts in reasons.values())
    for source in ("vqav2", "okvqa"):
        for split, stats in report["sources"][source].items():
            lost = {}
            for counts in removed.get(source, {}).get(split, {}).values():
                for count, questions in counts.get("answer_counts", {}).items():
                    lost[count] = lost.get(count, 0) + questions
            histogram = before[source][split]["answer_counts"]
            assert stats["answer_counts"] == {count: n - lost.get(count, 0) for count, n in histogram.items()}
            assert sum(stats["answer_counts"].values()) == stats["items_written"] + stats["skipped"].get("low_agreement", 0)


def test_the_skipped_images_are_gone_from_the_shards_and_nothing_else(skipping_repo, planted, audited):
    repo, _ = skipping_repo
    gone = {(image["family"], image["split"], image["image_id"]) for image in (e["skipped"] for e in planted[1]["near_duplicates"])}
    unfiltered = audited.as_dataset()
    for split in SPLITS:
        family_of = lambda row: "gqa" if row["id"].startswith("gqa/") else "coco"  # noqa: E731
        keep = [row["id"] for row in unfiltered[split] if (family_of(row), split, row["metadata"]["image_id"]) not in gone]
        for streaming in (False, True):
            loaded = datasets.load_dataset(str(repo), "full", split=split, streaming=streaming)
            assert sorted(row["id"] for row in loaded) == sorted(keep) and len(keep) < len(unfiltered[split])


def test_the_builder_skips_alike_with_one_process(planted, skipping_repo, tmp_path):
    builder = prepared(planted[0], tmp_path / "cache", "full", near_duplicate_distance=DISTANCE)
    report = builder.near_duplicates_report()
    assert report == skipping_repo[1]["near_duplicates"]
    repo_ids = {split: sorted(row["id"] for row in datasets.load_dataset(str(skipping_repo[0]), "full", split=split)) for split in SPLITS}
    assert {split: sorted(builder.as_dataset(split=split)["id"]) for split in SPLITS} == repo_ids
    assert builder.build_stats() == skipping_repo[1]["sources"]
    # A later builder that finds this prepared cache generates nothing, and skips and reports alike.
    again = prepared(planted[0], tmp_path / "cache", "full", near_duplicate_distance=DISTANCE)
    assert {split: sorted(again.as_dataset(split=split)["id"]) for split in SPLITS} == repo_ids
    assert again.near_duplicates_report() == report and again.build_stats() == skipping_repo[1]["sources"]


@pytest.mark.parametrize("order", [None, ("coco", "okvqa", "gqa", "vqav2")])
def test_the_reports_do_not_depend_on_the_order_the_shards_are_generated_in(planted, tmp_path, monkeypatch, order):
    """inputs.GENERATION_ORDER only chooses which num_proc worker generates what: the counts and the audit, key
    order included (build_report.json is compared byte for byte), are those of generating in the config's order."""
    overrides = {"near_duplicate_distance": DISTANCE, **({"sources": order} if order else {})}

    def reports(generation_order, cache):
        monkeypatch.setattr(inputs, "GENERATION_ORDER", generation_order)
        builder = prepared(planted[0], cache, "full", **overrides)
        return [json.dumps(part) for part in (builder.build_stats(), builder.near_duplicates_report(), builder.decontamination_report())]

    in_config_order = reports(order or SOURCES, tmp_path / "config-order")
    assert reports(GENERATION_ORDER, tmp_path / "generation-order") == in_config_order


def test_streaming_with_a_distance_is_refused_in_one_line(planted, tmp_path):
    builder = ArrCocVqa(config_name="full", data_dir=str(planted[0]), cache_dir=str(tmp_path), near_duplicate_distance=DISTANCE)
    with pytest.raises(ValueError, match="needs a map-style build"):
        next(iter(builder.as_streaming_dataset(split="train")))


@pytest.mark.parametrize("value,match", [(-1, "from 0 to 64"), (65, "from 0 to 64"), (True, "from 0 to 64"), ("8", "from 0 to 64")])
def test_bad_distances_are_refused(value, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        ArrCocVqa(config_name="small", cache_dir=str(tmp_path), near_duplicate_distance=value)


def test_a_distance_needs_decontamination(tmp_path):
    with pytest.raises(ValueError, match="needs decontaminate=True"):
        ArrCocVqa(config_name="small", cache_dir=str(tmp_path), near_duplicate_distance=8, decontaminate=False)


def test_decontamination_off_reports_no_audit(mirror, tmp_path):
    builder = prepared(mirror, tmp_path / "cache", "full", decontaminate=False)
    assert builder.near_duplicates_report() == {"audited": False, "reason": "decontaminate is off"}


def test_a_capped_build_over_a_remote_images_zip_says_it_skipped_the_n_images(planted, tmp_path):
    caps = dict(max_images_train=4, max_images_validation=4)
    with FileServer(planted[0]) as server:
        remote = prepared(server.url, tmp_path / "remote", "full", **caps).near_duplicates_report()
        n_reads = [entry for entry in server.requests("images.zip") if entry.method == "GET"]
    local = prepared(planted[0], tmp_path / "local", "full", **caps).near_duplicates_report()
    part = remote["comparisons"]["train_vs_gqa_n_images"]
    assert part["audited"] is False and "capped build over a remote images.zip" in part["reason"]
    assert local["comparisons"]["train_vs_gqa_n_images"]["audited"] is True
    assert len(n_reads) < 30  # the capped images and the directory, not every n... member


# -- real photos: no false pair among them ----------------------------------------------------------------


@needs_realdata
def test_with_real_photos_the_audit_finds_the_planted_copies_and_no_other_pair(planted, tmp_path):
    """The planted mirror with every picture it can hold replaced by a distinct real photo (a real-photos mirror,
    not the official download), each planted copy a re-host of its original's real photo."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in os.listdir(planted[0]):
        os.link(os.path.join(planted[0], name), mirror / name)
    photos = iter(sorted(REAL_PHOTOS))
    copies = {(e["copy"]["archive"], e["copy"]["image_id"]): e for e in planted[1]["near_duplicates"]}
    originals = {(e["original"]["archive"], e["original"]["image_id"]) for e in planted[1]["near_duplicates"]}
    members = {key: data for archive in ("val2014.zip", "train2014.zip", "images.zip") for key, data in _members(mirror / archive).items()}
    real_of, placed = {}, 0
    for key in sorted(members, key=lambda key: (key not in originals, key)):  # originals first: each gets a photo
        if key in copies or not _decodes(members[key]):
            continue
        path = next(photos, None)
        if path is not None:
            with open(path, "rb") as handle:
                real_of[key] = handle.read()
            placed += 1
    for key, entry in copies.items():
        original = (entry["original"]["archive"], entry["original"]["image_id"])
        real_of[key] = rehost(real_of[original], entry["scale"], entry["quality"])
    for archive in ("val2014.zip", "train2014.zip", "images.zip"):
        _rewrite(mirror / archive, {member: real_of[(archive, image_id)] for (_, image_id), member in _names(mirror / archive).items()
                                    if (archive, image_id) in real_of})  # fmt: skip
    assert placed == len(REAL_PHOTOS)  # every real photo is in the mirror, as a distinct image
    report = prepared(mirror, tmp_path / "cache", "full").near_duplicates_report()
    assert pair_ids(report) == planted_pairs(planted[1])
    assert max(pair["distance"] for pair in report["closest_pairs"]) <= 6


def _names(archive) -> dict:
    with zipfile.ZipFile(archive) as handle:
        return {(archive.name, os.path.splitext(name.rsplit("/", 1)[1])[0].split("_")[-1].lstrip("0") or "0"): name
                for name in handle.namelist() if name.endswith(".jpg")}  # fmt: skip


def _members(archive) -> dict:
    with zipfile.ZipFile(archive) as handle:
        return {key: handle.read(name) for key, name in _names(archive).items()}


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except OSError:
        return False
    return True


def _rewrite(archive, replaced: dict) -> None:
    with zipfile.ZipFile(archive) as source:
        entries = [(info, replaced.get(info.filename, None) or source.read(info)) for info in source.infolist()]
    os.unlink(archive)  # a hard link to the planted mirror: write a file of our own
    with zipfile.ZipFile(archive, "w") as target:
        for info, data in entries:
            target.writestr(info, data)


# -- the card's snippet ------------------------------------------------------------------------------------


def test_the_snippet_removes_the_rows_near_an_evaluation_set_map_style_and_streaming(audited):
    snippets = run_readme_snippets("phash", "near_duplicate_filter")
    without, phash = snippets["without_near_duplicates"], snippets["phash"]
    train = audited.as_dataset(split="train")
    rows = raw_rows(train)
    validation = raw_rows(audited.as_dataset(split="validation"))
    # Evaluation set: two validation images given as bytes, and the hash of one train image's copy.
    eval_bytes = [row["image"]["bytes"] for row in validation[:2]]
    eval_hashes = [phash(data) for data in eval_bytes] + [rows[3]["metadata"]["phash"]]
    near = {row["id"] for row in rows
            if any((int(row["metadata"]["phash"], 16) ^ int(h, 16)).bit_count() <= DISTANCE for h in eval_hashes)}  # fmt: skip
    assert rows[3]["id"] in near and len(near) < len(rows)
    wanted = [row["id"] for row in rows if row["id"] not in near]
    assert without(train, eval_bytes + eval_hashes[2:], DISTANCE)["id"] == wanted
    streamed = audited.as_streaming_dataset(split="train")
    assert [row["id"] for row in without(streamed, eval_hashes, DISTANCE)] == wanted


def test_the_snippet_takes_hashes_as_imagehash_writes_them_and_refuses_others():
    """16 hex digits in either case, or imagehash's own ImageHash of hash_size 8; an empty set removes nothing. A hash
    of another size would compare as a 64-bit one and match nothing (or overflow): one clear error instead."""
    import imagehash

    without = run_readme_snippets("phash", "near_duplicate_filter")["without_near_duplicates"]
    rows = datasets.Dataset.from_dict({"id": ["a", "b"], "metadata": [{"phash": "00000000000000ff"}, {"phash": "ffffffffffffff00"}]})
    assert without(rows, [])["id"] == ["a", "b"]
    assert without(rows, ["00000000000000FF"])["id"] == without(rows, [imagehash.hex_to_hash("00000000000000ff")])["id"] == ["b"]
    for wrong in ("ff", "0" * 64, "00000000000000fg", imagehash.phash(Image.new("L", (64, 64)), hash_size=4)):
        with pytest.raises(ValueError, match="a pHash is 16 hex digits"):
            without(rows, [wrong])

