"""The builder class on generated mirrors: rows, order, caps, skips, bytes and features."""

import hashlib
import shutil
import zipfile

import datasets
import pytest
from helpers import SPLITS, image_member, make_mirror, member_sha256, prepared, raw_rows, smallest_digest_images

from arr_coc.process.errors import SourceFormatError
from arr_coc_vqa import ArrCocVqa

SOURCE_NAMES = ["vqav2", "gqa", "okvqa", "coco"]
# Written out again on purpose: the test must fail if the builder's schema drifts from the contract.
CONTRACT_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "image": datasets.Image(),
        "conversations": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "source": datasets.ClassLabel(names=["vqav2", "gqa", "okvqa", "coco"]),
        "task": datasets.ClassLabel(names=["vqa", "caption"]),
        "metadata": {
            "image_id": datasets.Value("string"),
            "coco_id": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "original_split": datasets.Value("string"),
            "qa": datasets.List(
                {
                    "question_id": datasets.Value("string"),
                    "question_type": datasets.Value("string"),
                    "answer_type": datasets.ClassLabel(names=["yes/no", "number", "other"]),
                    "answers": datasets.List(datasets.Value("string")),
                    "answer_count": datasets.Value("int32"),
                    "answer_score": datasets.Value("float32"),
                }
            ),
            "captions": datasets.List(datasets.Value("string")),
            "phash": datasets.Value("string"),
        },
    }
)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    path = tmp_path_factory.mktemp("mirror")
    manifest = make_mirror(path, images_per_split=10, questions_per_image=3)
    return path, manifest


@pytest.fixture(scope="module")
def full_builder(mirror, tmp_path_factory):
    return prepared(mirror[0], tmp_path_factory.mktemp("cache"), "full", num_proc=None)


@pytest.fixture(scope="module")
def full_rows(full_builder):
    built = full_builder.as_dataset()
    return {split: raw_rows(built[split]) for split in SPLITS}


def test_features_and_class_labels_are_the_contracts(full_builder):
    built = full_builder.as_dataset()
    for split in SPLITS:
        assert built[split].features == CONTRACT_FEATURES
        assert list(built[split].features) == ["id", "image", "conversations", "source", "task", "metadata"]
        assert list(built[split].features["metadata"]) == ["image_id", "coco_id", "width", "height", "original_split", "qa", "captions", "phash"]
    assert built["train"].features["metadata"]["qa"].feature["answer_type"].names == ["yes/no", "number", "other"]
    qa_fields = ["question_id", "question_type", "answer_type", "answers", "answer_count", "answer_score"]
    assert list(built["train"].features["metadata"]["qa"].feature) == qa_fields


def test_skip_counts_are_exact_and_the_invariant_holds(full_builder, mirror):
    _, manifest = mirror
    stats = full_builder.build_stats()
    for source in SOURCE_NAMES:
        for split in SPLITS:
            expected = manifest["sources"][source][split]
            got = stats[source][split]
            assert got["items_total"] == expected["items_total"], (source, split)
            assert got["skipped"] == {reason: n for reason, n in expected["expected_skipped"].items() if n}, (source, split)
            assert got["items_selected"] == got["items_total"]  # full: no cap
            assert got["items_selected"] == got["items_written"] + sum(got["skipped"].values())


def test_rows_written_match_rows_and_items(full_builder, full_rows):
    stats = full_builder.build_stats()
    for split in SPLITS:
        for source_index, source in enumerate(SOURCE_NAMES):
            rows = [row for row in full_rows[split] if row["source"] == source_index]
            assert stats[source][split]["rows_written"] == len(rows)
            items = len(rows) if source == "coco" else sum(len(row["metadata"]["qa"]) for row in rows)
            assert stats[source][split]["items_written"] == items


def test_every_image_is_the_source_member_byte_for_byte(full_rows, mirror):
    path, _ = mirror
    for split in SPLITS:
        for row in full_rows[split]:
            archive, member = image_member(row)
            assert hashlib.sha256(row["image"]["bytes"]).hexdigest() == member_sha256(path, archive, member), row["id"]


def test_row_shape_ids_and_turns(full_rows):
    for split in SPLITS:
        ids = [row["id"] for row in full_rows[split]]
        assert len(ids) == len(set(ids))
        for row in full_rows[split]:
            source = SOURCE_NAMES[row["source"]]
            meta = row["metadata"]
            assert row["id"] == f"{source}/{meta['original_split']}/{meta['image_id']}/0"
            roles = [turn["role"] for turn in row["conversations"]]
            assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
            if source == "coco":
                assert row["task"] == 1 and meta["qa"] == [] and len(meta["captions"]) >= 5
                assert all("\n" not in c and "  " not in c and c == c.strip() for c in meta["captions"])
                assert row["conversations"][1]["content"] in meta["captions"]
            else:
                assert row["task"] == 0 and meta["captions"] == []
                assert len(meta["qa"]) == len(roles) // 2
                question_ids = [qa["question_id"] for qa in meta["qa"]]
                assert question_ids == sorted(question_ids, key=int)
                assert all(t["content"].endswith("\nAnswer the question using a single word or phrase.") for t in row["conversations"][::2])


def test_real_records_come_through(full_rows):
    by_id = {row["id"]: row for row in full_rows["train"]}
    vqa = by_id["vqav2/train2014/393714/0"]
    qa = {q["question_id"]: (q, turn) for q, turn in zip(vqa["metadata"]["qa"], vqa["conversations"][1::2])}
    annotation, answer_turn = qa["393714000"]
    assert answer_turn["content"] == "white" and annotation["answers"][0] == "light blue"
    gqa = by_id["gqa/train_balanced/2354786/0"]
    gqa_ids = [q["question_id"] for q in gqa["metadata"]["qa"]]
    assert "02930152" in gqa_ids  # leading zero kept
    assert any(row["id"].startswith("gqa/train_balanced/n") for row in full_rows["train"])
    okvqa = by_id["okvqa/train2014/51606/0"]
    assert okvqa["conversations"][1]["content"] == "ponytail"
    assert okvqa["metadata"]["qa"][0]["question_type"] == "Sports and Recreation"


def test_image_modes_pass_through_with_header_sizes(full_rows):
    from io import BytesIO

    from PIL import Image

    formats = set()
    for row in full_rows["train"]:
        with Image.open(BytesIO(row["image"]["bytes"])) as image:
            formats.add((image.format, image.mode))
            assert (row["metadata"]["width"], row["metadata"]["height"]) == image.size
    assert {("JPEG", "L"), ("JPEG", "CMYK"), ("PNG", "RGB")} <= formats


def test_num_proc_does_not_change_rows_or_order(mirror, full_rows, tmp_path):
    builder = prepared(mirror[0], tmp_path, "full", num_proc=2)
    built = builder.as_dataset()
    for split in SPLITS:
        assert raw_rows(built[split]) == full_rows[split]


def test_streaming_gives_the_same_rows_with_several_shards(mirror, full_rows, tmp_path):
    builder = ArrCocVqa(config_name="full", data_dir=str(mirror[0]), cache_dir=str(tmp_path))
    streamed = builder.as_streaming_dataset()
    for split in SPLITS:
        assert streamed[split].num_shards >= 2
        assert raw_rows(streamed[split]) == full_rows[split]


def test_capped_config_keeps_the_smallest_digests(mirror, tmp_path):
    path, manifest = mirror
    builder = prepared(path, tmp_path, "small", max_images_train=4, max_images_validation=3)
    built = builder.as_dataset()
    stats = builder.build_stats()
    for split, cap in (("train", 4), ("validation", 3)):
        rows = raw_rows(built[split])
        for source_index, source in enumerate(SOURCE_NAMES):
            expected = manifest["sources"][source][split]
            assert len(expected["image_ids"]) > cap
            keep = smallest_digest_images(source, expected["image_ids"], cap)
            written = {row["metadata"]["image_id"] for row in rows if row["source"] == source_index}
            broken = set(expected["broken"]["missing_image"]) | set(expected["broken"]["corrupt_image"])
            overlap = {image_id for ids in expected.get("overlap", {}).values() for image_id in ids}  # leakage control
            assert written <= keep and keep - written <= broken | overlap, (source, split)
            assert stats[source][split]["items_total"] == expected["items_total"]
            assert stats[source][split]["items_selected"] < expected["items_total"]


def test_turns_per_example_one_gives_one_question_per_row(mirror, full_rows, tmp_path):
    builder = prepared(mirror[0], tmp_path, "full", turns_per_example=1, sources=("vqav2", "gqa"))
    rows = raw_rows(builder.as_dataset()["train"])
    assert all(len(row["metadata"]["qa"]) == 1 and len(row["conversations"]) == 2 for row in rows)
    multi = [row for row in full_rows["train"] if row["source"] in (0, 1)]
    assert len(rows) == sum(len(row["metadata"]["qa"]) for row in multi) > len(multi)
    # chunks keep the question order and number from 0
    chunks = [row for row in rows if row["metadata"]["image_id"] == "2354786"]
    assert [row["id"] for row in chunks] == [f"gqa/train_balanced/2354786/{i}" for i in range(len(chunks))]


def test_truncated_annotation_fails_naming_the_file(mirror, tmp_path):
    broken = tmp_path / "mirror"
    shutil.copytree(mirror[0], broken)
    archive = broken / "v2_Annotations_Val_mscoco.zip"
    member = "v2_mscoco_val2014_annotations.json"
    data = zipfile.ZipFile(archive).read(member)
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr(member, data[: len(data) // 2])
    builder = ArrCocVqa(config_name="full", data_dir=str(broken), cache_dir=str(tmp_path / "cache"), sources=("vqav2",))
    with pytest.raises(Exception) as raised:
        builder.download_and_prepare()
    assert any("v2_Annotations_Val_mscoco.zip" in reason and member in reason for reason in builder.build_failures())
    chain = raised.value
    while chain is not None and not isinstance(chain, SourceFormatError):
        chain = chain.__cause__ or chain.__context__
    assert chain is not None and "truncated JSON" in str(chain)


def test_missing_mirror_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no questions1.2.zip"):
        ArrCocVqa(config_name="small", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"), sources=("gqa",)).download_and_prepare()


@pytest.mark.parametrize(
    "override",
    [{"sources": ("vqa",)}, {"turns_per_example": 0}, {"gqa_answer_style": "long"}, {"max_images_train": -1}],
)
def test_bad_config_values_are_rejected(override, tmp_path):
    with pytest.raises(ValueError):
        ArrCocVqa(config_name="small", data_dir=str(tmp_path), cache_dir=str(tmp_path), **override)


def test_gqa_full_answer_style(mirror, tmp_path):
    builder = prepared(mirror[0], tmp_path, "small", sources=("gqa",), gqa_answer_style="full", vqa_prompt_suffix="")
    row = next(row for row in raw_rows(builder.as_dataset()["validation"]) if row["metadata"]["image_id"] == "2405722")
    turns = dict(zip([qa["question_id"] for qa in row["metadata"]["qa"]], row["conversations"][1::2]))
    assert turns["05515938"]["content"] == "This is a parrot."
    assert row["conversations"][0]["content"].endswith("?")


def test_none_override_lifts_the_cap(mirror, tmp_path):
    builder = ArrCocVqa(config_name="small", data_dir=str(mirror[0]), cache_dir=str(tmp_path), max_images_train=None)
    assert builder.config.max_images_train is None and builder.config.max_images_validation == 200
    assert builder.config_id != "small"


def test_build_stats_after_a_stream_and_with_a_warm_cache(mirror, full_builder, tmp_path):
    """The rebuilding doc's "Using the builder directly" sequence: build_stats() gives the build's counts
    after as_streaming_dataset() (not {}), from a builder that found the build in its cache (not "no
    build has run"), and from a stream once it has been read to the end."""
    expected = full_builder.build_stats()
    path = str(mirror[0])
    builder = ArrCocVqa(config_name="full", data_dir=path, cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    builder.as_dataset()
    stream = builder.as_streaming_dataset()
    assert builder.build_stats() == expected  # the prepared build's, not the unread stream's

    warm = ArrCocVqa(config_name="full", data_dir=path, cache_dir=str(tmp_path / "cache"))
    warm.download_and_prepare()  # finds the prepared data: generates nothing
    assert warm.build_stats() == expected
    assert warm.decontamination_report() == builder.decontamination_report()

    streaming_only = ArrCocVqa(config_name="full", data_dir=path, cache_dir=str(tmp_path / "other"))
    streams = streaming_only.as_streaming_dataset()
    with pytest.raises(RuntimeError, match="read to the end"):
        streaming_only.build_stats()
    for split in SPLITS:
        assert sum(1 for _ in streams[split]) == sum(1 for _ in stream[split])
    assert streaming_only.build_stats() == expected
