#!/usr/bin/env python
"""Offline demo: generate the sample mirror, build "small" from it, load it as a user would.

    python scripts/demo.py [--scratch scratch]

Everything goes under the scratch directory (ignored by git); the repository's own `data/` is
never touched, since it holds only shards built from the real sources. The demo writes only
`sample_mirror/`, `demo-repo/` and a marker file there, and on a rerun removes only those: it
refuses a non-empty directory that it did not create (so `--scratch .` cannot wipe anything).
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


MARKER = ".arr-coc-demo-scratch"
MIRROR = "sample_mirror"
# Named unlike the builder script: a directory called arr_coc_vqa would make load_dataset refuse it.
REPO = "demo-repo"


class ScratchError(Exception):
    """The scratch directory holds things the demo did not put there."""


def prepare_scratch(scratch: str) -> None:
    """Clear what an earlier demo wrote in `scratch`, and nothing else; refuse a directory that
    holds other things and was not created by the demo."""
    if os.path.exists(scratch) and not os.path.isdir(scratch):
        raise ScratchError(f"{scratch}: not a directory")
    entries = set(os.listdir(scratch)) if os.path.isdir(scratch) else set()
    if entries and MARKER not in entries and not _left_by_an_earlier_demo(scratch, entries):
        raise ScratchError(f"{scratch}: not empty and not created by this demo (it holds {sorted(entries)[0]!r}); "
                           "pass --scratch with a new or empty directory")
    for name in (MIRROR, REPO):
        shutil.rmtree(os.path.join(scratch, name), ignore_errors=True)
    os.makedirs(scratch, exist_ok=True)
    with open(os.path.join(scratch, MARKER), "w") as handle:
        handle.write("created by scripts/demo.py, which deletes only sample_mirror/ and demo-repo/ here\n")


def _left_by_an_earlier_demo(scratch: str, entries: set) -> bool:
    """Scratch directories of demos from before the marker: only the demo's two folders, the
    mirror with the generator's manifest."""
    return entries <= {MIRROR, REPO} and (
        MIRROR not in entries or os.path.exists(os.path.join(scratch, MIRROR, make_sample_mirror.MANIFEST_NAME))
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scratch", default=os.path.join(REPO_ROOT, "scratch"), help="where the mirror and the build go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    mirror = os.path.join(args.scratch, MIRROR)
    repo = os.path.join(args.scratch, REPO)
    try:
        prepare_scratch(args.scratch)
    except ScratchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

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
