"""scripts/build.py exports, and users load the result with load_dataset, as on the Hub."""

import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile

import build
import datasets
import push_to_hub
import pyarrow.parquet as pq
import pytest
from helpers import ROOT, SPLITS, by_file_order, make_mirror, prepared, raw_rows, run_readme_snippets, tree_digest

from arr_coc.publish.card import source_config_entry
from arr_coc.publish.export import row_group_rows, shard_count, write_split
from arr_coc.schema import SOURCES

BUILD = os.path.join(ROOT, "scripts", "build.py")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    path = tmp_path_factory.mktemp("mirror")
    make_mirror(path, images_per_split=10, questions_per_image=3)
    return path


@pytest.fixture(scope="module")
def small_repo(mirror, tmp_path_factory):
    # Named unlike the builder script (a dir called arr_coc_vqa would make load_dataset refuse it).
    repo = tmp_path_factory.mktemp("hub-repo")
    assert build.main(["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo)]) == 0
    return repo


@pytest.fixture(scope="module")
def full_repo(mirror, tmp_path_factory):
    repo = tmp_path_factory.mktemp("hub-repo-full")
    assert build.main(["--config", "full", "--data-dir", str(mirror), "--output-dir", str(repo)]) == 0
    return repo


def shard_files(repo, config, split, source="*"):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(str(repo), "data", config, f"{split}-*-{source}.parquet")))


def test_load_dataset_reads_the_export_like_the_builder(small_repo, mirror, tmp_path):
    loaded = datasets.load_dataset(str(small_repo), "small")
    builder = prepared(mirror, tmp_path, "small")
    expected = builder.as_dataset()
    for split in SPLITS:
        assert raw_rows(loaded[split]) == by_file_order(raw_rows(expected[split]))
        assert loaded[split].features == expected[split].features
    assert loaded["train"].features["source"].names == ["vqav2", "gqa", "okvqa", "coco"]
    assert loaded["train"][0]["image"].size[0] > 0  # decodes to a PIL image


def test_default_config_names_splits_and_infos(small_repo):
    assert datasets.get_dataset_config_names(str(small_repo)) == ["small"]
    assert datasets.get_dataset_split_names(str(small_repo), "small") == ["train", "validation"]
    default = datasets.load_dataset(str(small_repo))
    infos = datasets.get_dataset_infos(str(small_repo))
    assert "default" not in infos
    for split in SPLITS:
        assert infos["small"].splits[split].num_examples == len(default[split]) > 0


def test_streaming_gives_the_same_rows_one_shard_per_file(small_repo):
    for split in SPLITS:
        loaded = datasets.load_dataset(str(small_repo), "small", split=split)
        streamed = datasets.load_dataset(str(small_repo), "small", split=split, streaming=True)
        assert streamed.num_shards == len(shard_files(small_repo, "small", split))
        assert raw_rows(streamed) == raw_rows(loaded)


def test_shard_names_counts_schema_and_metadata(small_repo):
    with open(os.path.join(str(small_repo), "data", "small", "build_report.json")) as handle:
        report = json.load(handle)
    schemas = set()
    for split in SPLITS:
        for source in SOURCES:  # the rule applies to each source's rows of a split on their own
            rows = report["sources"][source][split]["rows_written"]
            files = shard_files(small_repo, "small", split, source)
            count = shard_count(rows, 0)
            assert count == (8 if rows >= 8 else 2 ** (rows.bit_length() - 1))
            total = sum(report["splits"][split]["shards"].values())
            assert len(files) == count and all(name.startswith(f"{split}-") and name.endswith(f"-of-{total:05d}-{source}.parquet") for name in files)
            assert report["splits"][split]["shards"][source] == count
            for name in files:
                parquet = pq.ParquetFile(os.path.join(str(small_repo), "data", "small", name))
                assert b"huggingface" in parquet.schema_arrow.metadata
                assert parquet.metadata.row_group(0).column(0).has_offset_index  # page index written
                schemas.add(parquet.schema_arrow.to_string(show_schema_metadata=False))
        assert sorted(shard_files(small_repo, "small", split)) == sorted(name for source in SOURCES for name in shard_files(small_repo, "small", split, source))
    assert len(schemas) == 1


def test_shard_count_rule():
    mb = 1000 * 1000
    assert shard_count(10_000, 100 * mb) == 8
    assert shard_count(10_000, 4100 * mb) == 16  # 8 shards would exceed 500 MB each
    assert shard_count(5, 1) == 4 and shard_count(1, 1) == 1 and shard_count(8, 1) == 8


def test_row_groups_hold_about_the_chosen_bytes_and_keep_the_page_index(small_repo, tmp_path):
    dataset = datasets.load_dataset(str(small_repo), "small", split="train")
    assert row_group_rows(100, 100 * 2000, 8000) == 4 and row_group_rows(100, 1, 8000) == 8000 and row_group_rows(3, 10**9, 1) == 1
    for family in write_split(dataset, "train", str(tmp_path), num_shards=1, row_group_bytes=0):
        # row_group_bytes=0 rounds up to one row per group: the finest row groups the export can write
        metadata = pq.ParquetFile(family.paths[0]).metadata
        assert metadata.num_row_groups == family.num_rows
        assert all(metadata.row_group(i).column(0).has_offset_index for i in range(metadata.num_row_groups))
    family = write_split(dataset, "train", str(tmp_path / "three"), num_shards=1, row_group_bytes=3 * dataset.data.nbytes // len(dataset))[0]
    sizes = [pq.ParquetFile(family.paths[0]).metadata.row_group(i).num_rows for i in range(pq.ParquetFile(family.paths[0]).metadata.num_row_groups)]
    assert sum(sizes) == family.num_rows and 1 < max(sizes) <= 6  # about 3 average rows' bytes per group


def test_build_report_keys_and_invariant(small_repo):
    with open(os.path.join(str(small_repo), "data", "small", "build_report.json")) as handle:
        report = json.load(handle)
    assert report["config"] == "small" and report["config_overrides"] == {}
    infos = datasets.get_dataset_infos(str(small_repo))["small"]
    for split in SPLITS:
        rows = 0
        for source in ("vqav2", "gqa", "okvqa", "coco"):
            stats = report["sources"][source][split]
            agreement = {"answer_counts"} if source in ("vqav2", "okvqa") else set()  # 10 reference answers
            assert set(stats) == {"items_total", "items_selected", "items_written", "rows_written", "skipped"} | agreement
            assert stats["items_selected"] == stats["items_written"] + sum(stats["skipped"].values())
            rows += stats["rows_written"]
        assert rows == infos.splits[split].num_examples


def test_two_configs_full_is_default_and_prose_survives(mirror, tmp_path):
    repo = tmp_path / "two-configs"
    assert build.main(["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo), "--max-images-train", "3"]) == 0
    readme = repo / "README.md"
    paragraph = "\nA paragraph written by hand, with *markdown* and a trailing space. \n"
    readme.write_text(readme.read_text() + paragraph)
    assert build.main(["--config", "full", "--data-dir", str(mirror), "--output-dir", str(repo)]) == 0
    assert build.main(["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo), "--max-images-train", "3"]) == 0
    assert readme.read_text().endswith(paragraph)
    assert sorted(datasets.get_dataset_config_names(str(repo))) == sorted(["full", "small", *SOURCES])
    assert datasets.load_dataset_builder(str(repo)).config.name == "full"
    infos = datasets.get_dataset_infos(str(repo))
    for config in ("small", "full"):
        loaded = datasets.load_dataset(str(repo), config, split="train")
        assert len(loaded) == infos[config].splits["train"].num_examples
    assert infos["small"].splits["train"].num_examples < infos["full"].splits["train"].num_examples
    card = readme.read_text()
    assert card.count("config_name: small") == 2 and card.count("default: true") == 1


def test_rebuild_with_fewer_shards_leaves_no_stale_shard(mirror, tmp_path):
    repo = tmp_path / "rebuild"
    args = ["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo)]
    assert build.main(args + ["--num-shards", "4"]) == 0
    assert len(shard_files(repo, "small", "train")) == 4 * len(SOURCES)  # --num-shards is per source
    assert build.main(args + ["--num-shards", "2"]) == 0
    # two files per source: keys 1/4 then 3/4, sources in ClassLabel order within a key
    assert shard_files(repo, "small", "train") == [f"train-{i:05d}-of-00008-{source}.parquet" for i, source in enumerate(SOURCES * 2)]
    assert len(datasets.load_dataset(str(repo), "small", split="train")) == datasets.get_dataset_infos(str(repo))["small"].splits["train"].num_examples
    assert not os.path.exists(repo / ".build-staging")


def test_failed_build_exits_non_zero_and_leaves_everything_untouched(mirror, tmp_path):
    repo = tmp_path / "failing"
    assert build.main(["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo)]) == 0
    before = tree_digest(repo)
    bad = tmp_path / "bad-mirror"
    shutil.copytree(mirror, bad)
    archive, member = bad / "v2_Annotations_Train_mscoco.zip", "v2_mscoco_train2014_annotations.json"
    data = zipfile.ZipFile(archive).read(member)
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr(member, data[: len(data) * 2 // 3])
    for num_proc in ("1", "2"):
        result = subprocess.run(
            [sys.executable, BUILD, "--config", "small", "--data-dir", str(bad), "--output-dir", str(repo), "--num-proc", num_proc],
            capture_output=True,
            text=True,
        )
        assert result.returncode != 0
        error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1 and "v2_Annotations_Train_mscoco.zip" in error_lines[0] and member in error_lines[0]
        assert "Traceback" not in result.stderr
        assert tree_digest(repo) == before


def card_yaml(repo) -> dict:
    from huggingface_hub import DatasetCard

    return DatasetCard.load(os.path.join(str(repo), "README.md")).data.to_dict()


def card_split_infos(repo) -> dict:
    """{config: {split: {num_bytes, num_examples}}} from the card's dataset_info."""
    return {
        info["config_name"]: {split["name"]: split for split in info["splits"]} for info in card_yaml(repo)["dataset_info"]
    }


def expected_shards(split_info: dict) -> int:
    """The contract's shard count for one source's split (fewer than 8 when it has fewer rows)."""
    return shard_count(split_info["num_examples"], split_info["num_bytes"])


def source_config_names(repo) -> list[str]:
    return [entry["config_name"] for entry in card_yaml(repo)["configs"] if entry["config_name"] in SOURCES]


def test_per_source_configs_are_exactly_that_sources_rows_of_full(full_repo):
    full = {split: raw_rows(datasets.load_dataset(str(full_repo), "full", split=split)) for split in SPLITS}
    infos = card_split_infos(full_repo)  # what the build wrote (get_dataset_infos would give datasets' cache's own figures)
    assert source_config_names(full_repo) == sorted(SOURCES)
    for source in SOURCES:
        loaded = datasets.load_dataset(str(full_repo), source)
        assert loaded["train"].features == datasets.load_dataset(str(full_repo), "full", split="train").features
        for split in SPLITS:
            expected = [row for row in full[split] if SOURCES[row["source"]] == source]
            assert expected and raw_rows(loaded[split]) == expected  # the same rows, in the same order
            assert infos[source][split]["num_examples"] == len(expected)
    for split in SPLITS:
        assert sum(infos[source][split]["num_bytes"] for source in SOURCES) == infos["full"][split]["num_bytes"]
    streamed = datasets.load_dataset(str(full_repo), "gqa", split="train", streaming=True)
    assert streamed.num_shards == len(shard_files(full_repo, "full", "train", "gqa")) == expected_shards(infos["gqa"]["train"])


def test_card_points_only_at_existing_files_and_no_shard_holds_two_sources(full_repo):
    for entry in card_yaml(full_repo)["configs"]:
        for data_files in entry["data_files"]:
            assert glob.glob(os.path.join(str(full_repo), data_files["path"])), data_files["path"]
        if entry["config_name"] in SOURCES:
            assert entry == {"config_name": entry["config_name"], **source_config_entry(entry["config_name"], list(SPLITS))}
    paths = glob.glob(os.path.join(str(full_repo), "data", "full", "*.parquet"))
    infos = card_split_infos(full_repo)
    assert len(paths) == sum(expected_shards(infos[source][split]) for source in SOURCES for split in SPLITS)
    for path in paths:
        codes = set(pq.read_table(path, columns=["source"]).column("source").to_pylist())
        assert [SOURCES[code] for code in codes] == [os.path.basename(path)[: -len(".parquet")].split("-")[-1]], path


def test_full_build_of_a_subset_drops_stale_source_configs_small_leaves_them(mirror, tmp_path):
    repo = tmp_path / "subset"
    full = ["--config", "full", "--data-dir", str(mirror), "--output-dir", str(repo)]
    assert build.main(full) == 0
    assert build.main(["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo), "--max-images-train", "3"]) == 0
    assert source_config_names(repo) == sorted(SOURCES)  # a small build leaves them alone
    assert build.main(full + ["--sources", "gqa,coco"]) == 0
    card = card_yaml(repo)
    assert [entry["config_name"] for entry in card["configs"]] == ["coco", "full", "gqa", "small"]
    assert sorted(info["config_name"] for info in card["dataset_info"]) == ["coco", "full", "gqa", "small"]
    assert [entry["config_name"] for entry in card["configs"] if entry.get("default")] == ["full"]
    infos = datasets.get_dataset_infos(str(repo))
    for config in ("coco", "gqa", "small", "full"):
        assert len(datasets.load_dataset(str(repo), config, split="train")) == infos[config].splits["train"].num_examples > 0


def test_usage_errors_are_clear(tmp_path):
    for args, message in (
        (["--config", "medium"], "invalid choice: 'medium'"),
        (["--config", "small", "--max-images-train", "ten"], "expected an integer or none"),
        (["--config", "small", "--num-shards", "0"], "must be >= 1"),
    ):
        result = subprocess.run([sys.executable, BUILD, *args], capture_output=True, text=True)
        assert result.returncode == 2 and message in result.stderr


def test_readme_trl_snippet_gives_messages_and_image(small_repo):
    to_trl = run_readme_snippets("trl")["to_trl"]
    dataset = to_trl(datasets.load_dataset(str(small_repo), "small", split="train"))
    assert set(dataset.column_names) == {"messages", "image"}
    for row in dataset.select(range(5)):
        assert row["image"].size[0] > 0
        roles = [message["role"] for message in row["messages"]]
        assert roles[0] == "user" and roles == ["user", "assistant"] * (len(roles) // 2)
        assert all(isinstance(message["content"], str) for message in row["messages"])


def test_readme_qwen_snippet_puts_one_image_first(small_repo):
    to_qwen_messages = run_readme_snippets("qwen")["to_qwen_messages"]
    dataset = datasets.load_dataset(str(small_repo), "small", split="train")
    for row in dataset:
        messages = to_qwen_messages(row)
        items = [item for message in messages for item in message["content"]]
        images = [item for item in items if item["type"] == "image"]
        assert len(images) == 1 and messages[0]["role"] == "user" and messages[0]["content"][0] is images[0]
        assert images[0]["image"] is row["image"]
        texts = [item["text"] for item in items if item["type"] == "text"]
        assert texts == [turn["content"] for turn in row["conversations"]]


def test_push_takes_no_token_on_the_command_line():
    with pytest.raises(SystemExit) as raised:
        push_to_hub.main(["--token", "hf_secret", "--dry-run"])
    assert raised.value.code == 2


def test_arrow_size_depends_on_the_rows_not_on_how_the_build_chunked_them():
    # The card's num_bytes and the row-group size come from this figure: a num_proc=2 build (other
    # chunk boundaries, a null-free chunk without a validity bitmap) must measure like num_proc=1.
    import pyarrow as pa

    from arr_coc.publish.export import contiguous_nbytes

    values = [None if i % 7 == 0 else str(i) for i in range(100)]
    schema = pa.schema(
        [
            ("coco_id", pa.string()),
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            # answer_count/score: null in GQA's rows only, so in some chunks and not in others
            ("qa", pa.list_(pa.struct([("answers", pa.list_(pa.string())), ("answer_count", pa.int32()),
                                       ("answer_score", pa.float32())]))),
        ]
    )
    rows = {
        "coco_id": values,
        "image": [{"bytes": b"\xff" * i, "path": f"{i}.jpg"} for i in range(100)],
        "qa": [[{"answers": [value or "none"], "answer_count": i % 11 if i < 40 else None,
                 "answer_score": 0.3 if i < 40 else None}] for i, value in enumerate(values)],
    }

    def chunked(cuts):
        bounds = [0, *cuts, 100]
        pieces = [{key: column[a:b] for key, column in rows.items()} for a, b in zip(bounds, bounds[1:])]
        return pa.concat_tables([pa.Table.from_pydict(piece, schema=schema) for piece in pieces])

    tables = [chunked(cuts) for cuts in ([], [50], [1, 7], [3, 9, 60], [40])]
    assert len({table.nbytes for table in tables}) > 1  # what the card used to say differed
    assert len({contiguous_nbytes(table) for table in tables}) == 1
    assert len({contiguous_nbytes(table.slice(5, 80)) for table in tables}) == 1
    assert len({contiguous_nbytes(table.slice(0, 40)) for table in tables}) == 1  # no null in it, bitmap or not


def test_an_interrupted_export_leaves_no_parquet_writer_noise(small_repo, tmp_path, monkeypatch):
    """Ctrl-C while datasets writes a shard: its ParquetWriter must not print 'Exception ignored in
    ParquetWriter.__del__' (write to a closed file) when it is collected after the one-line error."""
    import gc

    dataset = datasets.load_dataset(str(small_repo), "small", split="validation")
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pq.ParquetWriter, "write_table", interrupted)
    with pytest.raises(KeyboardInterrupt) as raised:
        write_split(dataset, "validation", str(tmp_path / "out"))
    del raised  # the traceback goes, as after build.py has printed its line
    gc.collect()
    assert [entry.object for entry in unraisable] == []
