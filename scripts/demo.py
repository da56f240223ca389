#!/usr/bin/env python
"""Offline demo: generate the sample mirror, build "small" from it, load it as a user would.

    python scripts/demo.py [--scratch scratch]

Everything goes under the scratch directory (ignored by git); the repository's own `data/` is
never touched, since it holds only shards built from the real sources. The demo writes only
`sample_mirror/`, `demo-repo/` and a marker file there, and on a rerun removes only those: it
refuses a non-empty directory that it did not create (so `--scratch .` cannot wipe anything):
without its marker, only a directory holding nothing but a generated mirror (every file listed in
its manifest) and a build's output counts as the demo's. A scratch inside a dataset repository's
data/ is refused before anything is written. Every failure is one `error:` line, no traceback.
"""

import argparse
import json
import logging
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import build  # noqa: E402
import make_sample_mirror  # noqa: E402

from arr_coc.publish import staging  # noqa: E402

MARKER = ".arr-coc-demo-scratch"
MIRROR = "sample_mirror"
# Named unlike the builder script: a directory called arr_coc_vqa would make load_dataset refuse it.
REPO = "demo-repo"


class ScratchError(Exception):
    """The scratch directory holds things the demo did not put there."""


def prepare_scratch(scratch: str) -> None:
    """Clear what an earlier demo wrote in `scratch`, and nothing else; refuse a directory that
    holds other things and was not created by the demo. Checks everything before writing or deleting."""
    refuse_a_data_folder(scratch)
    if os.path.exists(scratch) and not os.path.isdir(scratch):
        raise ScratchError(f"{scratch}: not a directory")
    entries = set(os.listdir(scratch)) if os.path.isdir(scratch) else set()
    if entries and MARKER not in entries:
        foreign = _not_written_by_a_demo(scratch, entries)
        if foreign:
            raise ScratchError(f"{scratch}: not empty and not created by this demo (it holds {foreign!r}); "
                               "pass --scratch with a new or empty directory")
    for name in (MIRROR, REPO):
        shutil.rmtree(os.path.join(scratch, name), ignore_errors=True)
    os.makedirs(scratch, exist_ok=True)
    with open(os.path.join(scratch, MARKER), "w") as handle:
        handle.write("created by scripts/demo.py, which deletes only sample_mirror/ and demo-repo/ here\n")


def refuse_a_data_folder(scratch: str) -> None:
    """A dataset repository's data/ holds only shards built from the real sources: the demo writes
    nothing there, not even its marker (the same rule as make_sample_mirror.check_destination)."""
    folder = make_sample_mirror.repository_data_folder(scratch)
    if folder is not None:
        raise ScratchError(f"{scratch}: inside {folder}, a dataset repository's data folder; "
                           "pass --scratch with a directory outside it")


def _not_written_by_a_demo(scratch: str, entries: set) -> str | None:
    """For a scratch directory without the marker (demos from before it): the first path in it that
    a demo did not provably write, or None when all of it is the demo's own. Provably: the mirror
    with the generator's manifest listing every file in it, and a build's output beside it."""
    for name in sorted(entries - {MIRROR, REPO}):
        return os.path.join(scratch, name)
    if MIRROR not in entries:  # every demo writes the mirror before the build
        return os.path.join(scratch, sorted(entries)[0])
    return _not_the_generators(os.path.join(scratch, MIRROR)) or (
        _not_a_builds(os.path.join(scratch, REPO)) if REPO in entries else None)


def _not_the_generators(mirror: str) -> str | None:
    manifest = os.path.join(mirror, make_sample_mirror.MANIFEST_NAME)
    try:
        with open(manifest) as handle:
            listed = set(json.load(handle)["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return manifest if os.path.exists(manifest) else mirror
    for name in sorted(os.listdir(mirror)):
        path = os.path.join(mirror, name)
        if name != make_sample_mirror.MANIFEST_NAME and (name not in listed or not os.path.isfile(path)):
            return path
    return None


def _not_a_builds(repo: str) -> str | None:
    """What `build.py --config small --output-dir repo` writes: the card, data/small/ with parquet
    shards and the build report, and .build-staging/ with one `small-*` directory (and lock) per build."""
    allowed = {"README.md": os.path.isfile, "data": os.path.isdir, staging.STAGING_DIR: os.path.isdir}
    for name in sorted(os.listdir(repo)):
        path = os.path.join(repo, name)
        if name not in allowed or not allowed[name](path):
            return path
    data = os.path.join(repo, "data")
    if os.path.isdir(data):
        for name in sorted(os.listdir(data)):
            if name != "small" or not os.path.isdir(os.path.join(data, name)):
                return os.path.join(data, name)
        small = os.path.join(data, "small")
        for name in sorted(os.listdir(small)) if os.path.isdir(small) else ():
            path = os.path.join(small, name)
            if not (name.endswith(".parquet") or name == "build_report.json") or not os.path.isfile(path):
                return path
    staging_root = os.path.join(repo, staging.STAGING_DIR)
    for name in sorted(os.listdir(staging_root)) if os.path.isdir(staging_root) else ():
        if not name.startswith("small-"):
            return os.path.join(staging_root, name)
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scratch", default=os.path.join(REPO_ROOT, "scratch"), help="where the mirror and the build go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        prepare_scratch(args.scratch)
        return run_demo(args.scratch)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a demo's failure is one line, not a traceback
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1


def _one_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    if isinstance(error, (ScratchError, ValueError, OSError)):  # these name their path already
        return lines[0] if lines else type(error).__name__
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def run_demo(scratch: str) -> int:
    mirror = os.path.join(scratch, MIRROR)
    repo = os.path.join(scratch, REPO)
    print(f"1. sample mirror (official layout) -> {mirror}")
    make_sample_mirror.write_sample_mirror(mirror)
    for name in sorted(os.listdir(mirror)):
        print(f"   {name:48s} {os.path.getsize(os.path.join(mirror, name)):>9,d} bytes")

    print(f"2. build 'small' -> {repo}")
    status = build.main(["--config", "small", "--data-dir", mirror, "--output-dir", repo, "--num-proc", "2"])
    if status != 0:
        return status

    print("3. load it as a user would: load_dataset(repo, 'small')")
    from datasets import load_dataset

    dataset = load_dataset(repo, "small")
    print(dataset)
    train = dataset["train"]
    row = train[0]
    image = row.pop("image")
    # Show ClassLabel values by name, as the dataset viewer does.
    row["source"] = train.features["source"].int2str(row["source"])
    row["task"] = train.features["task"].int2str(row["task"])
    answer_types = train.features["metadata"]["qa"].feature["answer_type"]
    for qa in row["metadata"]["qa"]:
        qa["answer_type"] = answer_types.int2str(qa["answer_type"])
    print(f"first train row (image: {image.format} {image.mode} {image.size[0]}x{image.size[1]}):")
    for key, value in row.items():
        if key == "metadata":
            for meta_key, meta_value in value.items():
                print(f"  metadata.{meta_key}: {json.dumps(meta_value, ensure_ascii=False)}")
        else:
            print(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
