"""Shared test helpers: mirrors, builders, and row access the way users load data."""

import glob
import hashlib
import json
import os
import sys
import zipfile

import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import build  # noqa: E402
import make_sample_mirror  # noqa: E402
from readme_snippets import readme_snippets, run_readme_snippets  # noqa: E402,F401 - the tests read the card through helpers
from arr_coc_vqa import ArrCocVqa  # noqa: E402

SPLITS = ("train", "validation")


def built_from_disk(mirror, repo, config: str = "small", flags=()):
    """`repo` after scripts/build.py built `config` from the mirror on disk: the reference that builds
    from remote mirrors (http, s3, gs, faulty servers) are compared with."""
    assert build.main(["--config", config, "--data-dir", str(mirror), "--output-dir", str(repo), *flags]) == 0
    return repo


def make_mirror(path, **kwargs) -> dict:
    return make_sample_mirror.write_sample_mirror(str(path), **kwargs)


def raw_rows(dataset) -> list[dict]:
    """Rows with image bytes instead of PIL images (map-style or streaming)."""
    if isinstance(dataset, datasets.IterableDataset):
        return list(dataset.decode(False))
    return list(dataset.cast_column("image", datasets.Image(decode=False)))


def prepared(mirror, cache_dir, config_name="full", num_proc=None, **overrides):
    builder = ArrCocVqa(config_name=config_name, data_dir=str(mirror), cache_dir=str(cache_dir), **overrides)
    builder.download_and_prepare(num_proc=num_proc)
    return builder


def image_member(row: dict) -> tuple[str, str]:
    """(archive, member) the row's image comes from, by the official naming."""
    source = row["source"] if isinstance(row["source"], str) else ("vqav2", "gqa", "okvqa", "coco")[row["source"]]
    if source == "gqa":
        return "images.zip", f"images/{row['image']['path']}"
    split = row["metadata"]["original_split"]
    return f"{split}.zip", f"{split}/{row['image']['path']}"


def member_sha256(mirror, archive: str, member: str) -> str:
    with zipfile.ZipFile(os.path.join(str(mirror), archive)) as handle:
        return hashlib.sha256(handle.read(member)).hexdigest()


def smallest_digest_images(source: str, image_ids, cap: int) -> set:
    return set(sorted(image_ids, key=lambda image_id: hashlib.sha1(f"{source}:{image_id}".encode()).hexdigest())[:cap])


def tree_digest(repo) -> dict:
    """sha256 of every file under `repo`, by relative path: to prove a failed build changed nothing."""
    digests = {}
    for path in sorted(glob.glob(os.path.join(str(repo), "**"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                digests[os.path.relpath(path, str(repo))] = hashlib.sha256(handle.read()).hexdigest()
    return digests


def comparable_digest(repo) -> dict:
    """tree_digest, with each build_report.json as its JSON less the near-duplicate audit's `n...` part: a capped
    build over a remote images.zip does not read the `n...` members and says so there (DESIGN.md, "Near
    duplicates"), where the same build from disk reads them. Everything else must still be identical."""
    digests = tree_digest(repo)
    for path in digests:
        if os.path.basename(path) == "build_report.json":
            digests[path] = without_n_images_audit(json.loads(open(os.path.join(str(repo), path)).read()))
    return digests


def without_n_images_audit(report: dict) -> dict:
    report = json.loads(json.dumps(report))
    report["near_duplicates"]["comparisons"].pop("train_vs_gqa_n_images")
    return report


def by_file_order(rows: list[dict], num_shards=None) -> list[dict]:
    """The builder's rows in the order load_dataset reads the export of a test mirror, restated from
    DESIGN.md ("Shard order"): each source's rows cut into contiguous shards (8, or --num-shards, never
    more than its rows: tiny test images never reach the 500 MB rule), file j of n keyed by
    ((j + 0.5) / n, source index), files read by key."""
    names = ("vqav2", "gqa", "okvqa", "coco")
    by_source = {}
    for row in rows:
        by_source.setdefault(row["source"] if isinstance(row["source"], str) else names[row["source"]], []).append(row)
    files = []
    for source, source_rows in by_source.items():
        count = min(num_shards or 8, len(source_rows))
        if not num_shards and count < 8:
            count = 2 ** (count.bit_length() - 1)  # the largest power of two not above the row count
        size, extra = divmod(len(source_rows), count)
        start = 0
        for j in range(count):  # datasets' shard(contiguous=True): the first `extra` shards get a row more
            end = start + size + (j < extra)
            files.append(((j + 0.5) / count, names.index(source), source_rows[start:end]))
            start = end
    return [row for _, _, shard in sorted(files, key=lambda file: file[:2]) for row in shard]


def to_older_layout(repo, config: str) -> list[str]:
    """Rename a build's shards as the builds before the interleaved order named them,
    `<split>-<source>-NNNNN-of-NNNNN.parquet` (each source's files numbered on their own, in the same
    row order), and point the card's per-source configs at them (`data/full/<split>-<source>-*`), as
    those builds wrote it. Returns the old names (relative to the repository)."""
    folder = os.path.join(str(repo), "data", config)
    families = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".parquet"):
            split, _, _, _, source = name[: -len(".parquet")].split("-")  # <split>-NNNNN-of-NNNNN-<source>
            families.setdefault((split, source), []).append(name)
    renamed = []
    for (split, source), names in families.items():
        for j, name in enumerate(names):  # within a source, the new numbering keeps its order
            old = f"{split}-{source}-{j:05d}-of-{len(names):05d}.parquet"
            os.rename(os.path.join(folder, name), os.path.join(folder, old))
            renamed.append(f"data/{config}/{old}")
    readme = os.path.join(str(repo), "README.md")
    with open(readme, encoding="utf-8") as handle:
        card = handle.read()
    for split, source in families:
        card = card.replace(f"path: data/{config}/{split}-*-{source}.parquet", f"path: data/{config}/{split}-{source}-*")
    with open(readme, "w", encoding="utf-8") as handle:
        handle.write(card)
    return sorted(renamed)


# A child that runs a script as `python SCRIPT ARGS` would, and sends itself a signal when the script
# starts importing MODULE: a signal that arrives during the script's slow imports, at a set point.
# Run as: [python, "-c", SIGNAL_DURING_IMPORTS, SCRIPT, MODULE, SIGNUM, *ARGS].
SIGNAL_DURING_IMPORTS = """
import os, runpy, sys
script, module, signum = sys.argv[1], sys.argv[2], int(sys.argv[3])

class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signum)
        return None

sys.meta_path.insert(0, SignalOnImport())
sys.argv = [script] + sys.argv[4:]
runpy.run_path(script, run_name="__main__")
"""


