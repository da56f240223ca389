"""The shard order (DESIGN.md, "Shard order"): a split's sorted file names interleave the sources, so
its first files, which the Hub viewer's first page, statistics and search read (in sorted order, up
to a byte cap), hold every source; per-source configs still read exactly their source; and a build
over a repository holding the older layout replaces it as one step.

scripts/viewer_check.py runs the viewer's own code on such a build; this module asserts the property."""

import os
import shutil
import zipfile

import build
import datasets
import pyarrow.parquet as pq
import pytest
from helpers import SPLITS, make_mirror, raw_rows, to_older_layout, tree_digest

from arr_coc.publish.layout import OLD_SHARD_NAME, SHARD_NAME, shard_names, shard_order
from arr_coc.schema import SOURCES

# Images per source and split: 16, 4, 2 and 8 rows give 8, 4, 2 and 8 files (never more files than rows).
IMAGES = {"vqav2": 16, "gqa": 4, "okvqa": 2, "coco": 8}
FILES = {"vqav2": 8, "gqa": 4, "okvqa": 2, "coco": 8}
VIEWER_SHARE = 0.4  # the stand-in for the viewer's 5 GB of a split (statistics, search)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """`full` of a mirror whose sources differ in size, built with num_proc 1 and 2."""
    mirror = tmp_path_factory.mktemp("order-mirror")
    make_mirror(mirror, images=IMAGES, questions_per_image=2, image_size=(24, 16), broken=False)
    built = []
    for num_proc in ("1", "2"):
        repo = tmp_path_factory.mktemp(f"order-repo-np{num_proc}")
        # Leakage control off: the generated GQA images that overlap COCO would be skipped, and the
        # file counts here follow from the row counts set above.
        args = ["--config", "full", "--data-dir", str(mirror), "--output-dir", str(repo), "--num-proc", num_proc, "--no-decontaminate"]
        assert build.main(args) == 0
        built.append(repo)
    return mirror, built[0], built[1]


def split_files(repo, split: str) -> list[str]:
    """The split's shard names, sorted: the order load_dataset and the viewer read them in."""
    return sorted(name for name in os.listdir(repo / "data" / "full") if name.startswith(f"{split}-") and name.endswith(".parquet"))


def source_of(name: str) -> str:
    return SHARD_NAME.match(name)["source"]


def test_the_key_by_hand():
    # keys: vqav2 and coco 1/8 3/8 5/8 7/8, gqa 1/4 3/4, okvqa 1/2; a tie goes to the ClassLabel order
    assert shard_order({"coco": 4, "okvqa": 1, "gqa": 2, "vqav2": 4}) == [
        ("vqav2", 0), ("coco", 0), ("gqa", 0), ("vqav2", 1), ("coco", 1), ("okvqa", 0),
        ("vqav2", 2), ("coco", 2), ("gqa", 1), ("vqav2", 3), ("coco", 3),
    ]  # fmt: skip
    names = shard_names("train", {"gqa": 2, "okvqa": 1})
    assert names == {"gqa": ["train-00000-of-00003-gqa.parquet", "train-00002-of-00003-gqa.parquet"],
                     "okvqa": ["train-00001-of-00003-okvqa.parquet"]}  # fmt: skip


def test_a_full_build_is_numbered_by_the_key_and_the_same_for_any_num_proc(repos):
    _, repo, repo_np2 = repos
    assert tree_digest(repo / "data") == tree_digest(repo_np2 / "data")
    assert (repo / "README.md").read_text() == (repo_np2 / "README.md").read_text()
    for split in SPLITS:
        names = split_files(repo, split)
        parsed = [SHARD_NAME.match(name) for name in names]
        assert all(parsed), names
        assert [int(match["index"]) for match in parsed] == list(range(len(names)))
        assert {int(match["count"]) for match in parsed} == {len(names)}
        assert {source: sum(source_of(name) == source for name in names) for source in SOURCES} == FILES
        # The contract's key, restated: file j of n files sorts by ((j + 0.5) / n, source index).
        keys = sorted(((j + 0.5) / FILES[source], SOURCES.index(source)) for source in SOURCES for j in range(FILES[source]))
        assert [source_of(name) for name in names] == [SOURCES[index] for _, index in keys]
        for name in names:  # each file still holds one source
            assert set(pq.read_table(repo / "data" / "full" / name, columns=["source"]).column("source").to_pylist()) == {
                SOURCES.index(source_of(name))
            }


def file_bytes(path) -> dict:
    """A file's size on disk, and its rows' uncompressed size as the viewer counts it to decide how many
    files its statistics and search read (libcommon.parquet_utils.get_num_parquet_files_to_process:
    the row groups' total_byte_size)."""
    metadata = pq.read_metadata(path)
    return {
        "on disk": os.path.getsize(path),
        "uncompressed": sum(metadata.row_group(index).total_byte_size for index in range(metadata.num_row_groups)),
    }


def prefixes_missing_a_source(files: list, sizes: dict, sources: dict) -> list:
    """The prefixes of `files` holding at least VIEWER_SHARE of the bytes that lack some source."""
    total, held, seen, missing = sum(sizes.values()), 0, set(), []
    for length, name in enumerate(files, 1):
        held += sizes[name]
        seen.add(sources[name])
        if held >= VIEWER_SHARE * total and seen != set(sources.values()):
            missing.append(length)
    return missing


def test_every_prefix_with_40_percent_of_a_split_holds_every_source(repos):
    _, repo, _ = repos
    for split in SPLITS:
        names = split_files(repo, split)
        sources = {name: source_of(name) for name in names}
        measured = {name: file_bytes(repo / "data" / "full" / name) for name in names}
        for measure in ("on disk", "uncompressed"):
            sizes = {name: measured[name][measure] for name in names}
            assert prefixes_missing_a_source(names, sizes, sources) == [], (split, measure)
            # The check can tell: the older layout's names sort source by source (coco, gqa, okvqa,
            # vqav2), and then the first 40 % of the bytes miss vqav2.
            by_source = sorted(names, key=lambda name: (sources[name], int(SHARD_NAME.match(name)["index"])))
            assert prefixes_missing_a_source(by_source, sizes, sources), (split, measure)


def rows_by_name(repo, names: list[str]) -> list[str]:
    return [row_id for name in names for row_id in pq.read_table(repo / "data" / "full" / name, columns=["id"]).column("id").to_pylist()]


def test_each_per_source_config_gives_exactly_its_sources_rows(repos):
    _, repo, _ = repos
    infos = datasets.get_dataset_infos(str(repo))
    for split in SPLITS:
        full = raw_rows(datasets.load_dataset(str(repo), "full", split=split))
        assert [row["id"] for row in full] == rows_by_name(repo, split_files(repo, split))
        for source in SOURCES:
            expected = [row for row in full if SOURCES[row["source"]] == source]
            assert len(expected) == IMAGES[source] == infos[source].splits[split].num_examples
            assert raw_rows(datasets.load_dataset(str(repo), source, split=split)) == expected
            streamed = datasets.load_dataset(str(repo), source, split=split, streaming=True)
            assert streamed.num_shards == FILES[source]
            assert raw_rows(streamed) == expected
    # The card's data_files example (docs/mixtures.md) for a config without per-source configs:
    pattern = "data/full/train-*-okvqa.parquet"
    by_pattern = datasets.load_dataset(str(repo), data_files={"train": pattern}, split="train")
    assert [row["id"] for row in raw_rows(by_pattern)] == [row["id"] for row in full_rows(repo, "train") if row["id"].startswith("okvqa/")]


def full_rows(repo, split: str) -> list:
    return raw_rows(datasets.load_dataset(str(repo), "full", split=split))


def card_paths(repo) -> dict:
    from huggingface_hub import DatasetCard

    configs = DatasetCard.load(str(repo / "README.md")).data.to_dict()["configs"]
    return {entry["config_name"]: [item["path"] for item in entry["data_files"]] for entry in configs}


def test_a_build_over_the_older_layout_replaces_it_as_one_step_or_not_at_all(repos, tmp_path):
    mirror, built, _ = repos
    repo = tmp_path / "repo"
    shutil.copytree(built, repo)
    old_names = to_older_layout(repo, "full")
    assert card_paths(repo)["gqa"] == ["data/full/train-gqa-*", "data/full/validation-gqa-*"]
    readme = repo / "README.md"
    readme.write_text(readme.read_text() + "\nProse the build must keep.\n")
    before = tree_digest(repo)
    args = ["--config", "full", "--output-dir", str(repo), "--no-decontaminate"]

    bad = tmp_path / "bad-mirror"  # a truncated annotation file: the build fails after reading the sources
    shutil.copytree(mirror, bad)
    archive, member = bad / "v2_Annotations_Train_mscoco.zip", "v2_mscoco_train2014_annotations.json"
    data = zipfile.ZipFile(archive).read(member)
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr(member, data[: len(data) * 2 // 3])
    assert build.main(args + ["--data-dir", str(bad)]) == 1
    assert tree_digest(repo) == before  # the older layout's shards and card, untouched

    assert build.main(args + ["--data-dir", str(mirror)]) == 0
    left = sorted(os.listdir(repo / "data" / "full"))
    assert not [name for name in left if OLD_SHARD_NAME.match(name)]
    assert left == sorted(os.listdir(built / "data" / "full"))
    assert {path: digest for path, digest in tree_digest(repo).items() if path.startswith("data")} == {
        path: digest for path, digest in tree_digest(built).items() if path.startswith("data")
    }
    assert readme.read_text().endswith("\nProse the build must keep.\n")
    assert card_paths(repo)["gqa"] == ["data/full/train-*-gqa.parquet", "data/full/validation-*-gqa.parquet"]
    infos = datasets.get_dataset_infos(str(repo))
    for config in ("full", *SOURCES):  # no old shard left for the `{split}-*` globs: the counts match
        loaded = datasets.load_dataset(str(repo), config)
        assert {split: len(loaded[split]) for split in SPLITS} == {split: infos[config].splits[split].num_examples for split in SPLITS}
    assert len(old_names) == 2 * sum(FILES.values())
