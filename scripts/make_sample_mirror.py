#!/usr/bin/env python3
"""Write a small, deterministic *source mirror* of VQAv2, GQA 1.2, OK-VQA and COCO Captions 2014.

The mirror uses the official download file names, archive member names and JSON structures (see
DESIGN.md "Source mirror layout" and reference/source-formats.md), so the builder can be pointed at it
with ``data_dir=`` exactly as at the real downloads.  Tests, the offline demo and benchmarks use it.

What is in it:
  * real records quoted in the reference (VQAv2 458752000 "net", the 393714000 annotation, 263006000/1,
    OK-VQA 516065/817215/4802085, GQA "02930152" and the parrot "05515938", COCO val images
    391895/522418, train captions 48/67/126/148, val captions 37/38/49), everything else invented
    deterministically from ``seed``;
  * the format quirks a builder has to cope with (listed in the manifest under "quirks");
  * Visual Genome's ``image_data.json.zip`` (the GQA -> COCO id map; written with GQA, together with
    ``annotations_trainval2014.zip`` whose image lists the map refers to): some GQA train images are COCO
    val2014 photos and some GQA val images COCO train2014 photos (``overlap`` and ``coco_ids`` in the
    manifest; their questions are in ``expected_skipped`` as eval_overlap / train_overlap), others null;
  * with ``near_duplicates=True`` (``--near-duplicates``) four planted near duplicates: resized, re-encoded
    copies of images under other ids, two of them ``n...`` members of images.zip (see
    scripts/sample_mirror/near_duplicates.py; the pairs are in the manifest under "near_duplicates");
  * with ``broken=True`` a few deliberately broken cases: a truncated JPEG, an image that is referenced but
    absent from its zip, and questions without annotation.  Their expected effect on a build is in the
    manifest (``expected_skipped``).

Everything is a pure function of the parameters: zip entries carry a fixed timestamp, JSON is written in a
fixed order and images are encoded with fixed settings, so two runs give byte-identical files.

The manifest (``sample_mirror_manifest.json``, also returned by write_sample_mirror) is not an official
file; the builder ignores it.  Keys: seed, params (with the resolved per-source image counts), files
({name: {bytes, sha256}}), sources ({source: {"train"|"validation": {original_split, image_archive,
image_ids, items_total, expected_skipped, broken, image_modes; VQAv2 and OK-VQA: expected_answer_counts, the
build report's answer_counts histogram as the records were made}}}) and quirks (which records carry which
quirk).  items_total counts questions (VQA sources: distinct ids over questions and annotations files) or
images (coco); expected_skipped counts those items a correct build skips, uncapped: a question without
annotation is no_annotation, else a missing or truncated image gives missing_image / corrupt_image.

The generator's parts live in scripts/sample_mirror/, one module per idea (names, real_records,
vocabulary, plan, zipjson, vqav2, okvqa, gqa, coco, visual_genome, images, manifest); this file is the
entry point: the CLI, write_sample_mirror, which ties them together, and the destination checks.

Usage:
    python scripts/make_sample_mirror.py OUT_DIR [--images-per-split N] [--questions-per-image Q]
        [--image-size WxH | --image-sizes WxH,WxH,...] [--gqa-images N] [--vqav2-images N] [--okvqa-images N] [--coco-images N]
        [--sources vqav2,gqa,okvqa,coco] [--no-broken] [--near-duplicates] [--seed S]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Optional

from sample_mirror.coco import write_coco_annotations
from sample_mirror.gqa import allocate_gqa_ids, write_gqa_questions
from sample_mirror.images import PICTURE_VERSION, ImageSizes, write_image_zip
from sample_mirror.manifest import build_manifest
from sample_mirror.names import GQA_IMAGES_ZIP, GQA_QUESTIONS_ZIP, SOURCES, SPLITS
from sample_mirror.near_duplicates import plan_near_duplicates
from sample_mirror.okvqa import write_okvqa
from sample_mirror.plan import plan_coco_family, plan_gqa, plan_quirk_targets, plan_vqa_questions
from sample_mirror.visual_genome import plan_visual_genome, write_visual_genome
from sample_mirror.vqav2 import write_vqav2

# Re-exported: tests/test_sample_mirror.py (as msm.<NAME>) reads these from the entry point; the other
# generator names live in the sample_mirror modules.
from sample_mirror.names import COCO_SUB, GQA_SUB, OKVQA_FILES, OVERLAP_REASON, VQAV2_FILES
from sample_mirror.real_records import GQA_REAL_TRAIN, OKVQA_QUESTION_TYPES
from sample_mirror.zipjson import ZIP_DATE_TIME

__all__ = [
    # the entry point's own API
    "MANIFEST_NAME", "PICTURE_VERSION", "check_destination", "main", "repository_data_folder", "write_sample_mirror",
    # re-exports
    "COCO_SUB", "GQA_REAL_TRAIN", "GQA_SUB", "OKVQA_FILES", "OKVQA_QUESTION_TYPES", "OVERLAP_REASON", "SOURCES",
    "SPLITS", "VQAV2_FILES", "ZIP_DATE_TIME",
]


log = logging.getLogger("make_sample_mirror")

MANIFEST_NAME = "sample_mirror_manifest.json"


def _resolve_counts(images_per_split: int, images: dict | None, sources: tuple) -> dict:
    counts = {source: {split: images_per_split for split in SPLITS} for source in SOURCES}
    for source, value in (images or {}).items():
        if source not in SOURCES:
            raise ValueError(f"images: unknown source {source!r} (expected one of {', '.join(SOURCES)})")
        if isinstance(value, dict):  # per-split override {"train": n, "validation": m}
            counts[source].update({split: int(value[split]) for split in value})
        else:
            counts[source] = {split: int(value) for split in SPLITS}
    for source in sources:
        for split, count in counts[source].items():
            if count < 0:
                raise ValueError(f"images: negative image count for {source}/{split}")
    return counts


def write_sample_mirror(out_dir, *, images_per_split: int = 6, questions_per_image: int = 3,
                        image_size: tuple[int, int] = (64, 48), images: dict | None = None,
                        sources: tuple = SOURCES, broken: bool = True, seed: int = 0,
                        image_sizes: list | None = None, near_duplicates: bool = False) -> dict:
    """Write the mirror into `out_dir` and return its manifest (also written as sample_mirror_manifest.json).

    images: per-source image count per split, overriding images_per_split, e.g. {"gqa": 15000}; a value
    may also be {"train": n, "validation": m}.
    image_sizes: several (width, height) sizes instead of the one image_size: each image gets one of them,
    chosen per image id (recorded in the manifest's params; left out of them when None)."""
    sources = tuple(dict.fromkeys(sources))
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; expected some of {list(SOURCES)}")
    if not 1 <= questions_per_image <= 999:
        raise ValueError("questions_per_image must be in 1..999 (VQAv2 question ids are image_id*1000+k)")
    width, height = (int(v) for v in image_size)
    sizes = [(int(w), int(h)) for w, h in image_sizes] if image_sizes else [(width, height)]
    if min(min(size) for size in sizes) < 8:
        raise ValueError("image sizes must be at least 8x8")
    if near_duplicates and any(w < 160 or h < 120 for w, h in sizes):
        # A half-size copy of a 64x48 picture is 32x24, and the hash's 1/4-scale decode leaves 8x6 pixels of it.
        raise ValueError("near_duplicates needs images of at least 160x120 (--image-size): smaller re-hosted copies "
                         "are not near their originals under pHash")
    counts = _resolve_counts(images_per_split, images, sources)
    out = Path(out_dir)
    check_destination(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    plans, coco_zips = plan_coco_family(counts, sources, broken, seed)
    gqa_zip, gqa_ids = None, None
    if "gqa" in sources:
        gqa_plans, gqa_zip = plan_gqa(counts, broken, seed)
        plans.update(gqa_plans)
        gqa_ids = allocate_gqa_ids(plans, questions_per_image, seed)
    for (source, split), plan in plans.items():
        if source in ("vqav2", "okvqa"):
            plan_vqa_questions(plan, questions_per_image, broken)
            plan_quirk_targets(plan)
    planted = None
    if near_duplicates:
        if "gqa" in sources:
            plan_visual_genome(plans, seed)  # which GQA images have no coco_id (written below, the same again)
        planted = plan_near_duplicates(plans, coco_zips, gqa_zip, seed)

    image_sizes_of = ImageSizes(sizes, seed)
    files: list[str] = []
    if "vqav2" in sources:
        files += write_vqav2(out, plans, seed)
    if "okvqa" in sources:
        files += write_okvqa(out, plans, seed)
    if "gqa" in sources:
        decoy_image_ids = write_gqa_questions(out, plans, gqa_ids, seed)
        write_image_zip(out, gqa_zip, image_sizes_of, extra_ids=decoy_image_ids)
        files += [GQA_QUESTIONS_ZIP, GQA_IMAGES_ZIP] + write_visual_genome(out, plans, seed)
    if "coco" in sources or "gqa" in sources:  # GQA's leakage control needs COCO's image lists
        files += write_coco_annotations(out, plans, seed, image_sizes_of.of)
    for split, zip_plan in coco_zips.items():
        write_image_zip(out, zip_plan, image_sizes_of)
        files.append(zip_plan.name)

    params = dict(images_per_split=images_per_split, questions_per_image=questions_per_image,
                  image_size=[width, height], sources=list(sources), broken=broken, seed=seed,
                  picture_version=PICTURE_VERSION)
    if image_sizes:  # only then: a mirror made without them keeps the manifest (and bytes) it always had
        params["image_sizes"] = [list(size) for size in sizes]
    manifest = build_manifest(out, files, plans, coco_zips, gqa_zip, gqa_ids, counts, params)
    if planted is not None:  # only then: the default manifest stays as it was
        manifest["params"]["near_duplicates"] = True
        manifest["near_duplicates"] = planted
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(f["bytes"] for f in manifest["files"].values())
    log.info("wrote %d files, %.1f MB, to %s in %.2f s (%s)", len(files), total / 1e6, out,
             time.perf_counter() - started,
             ", ".join(f"{n} {f['bytes'] / 1e6:.2f} MB" for n, f in manifest["files"].items()))
    return manifest


def check_destination(out: Path) -> None:
    """Refuse (ValueError, one line) a dataset repository's data/ folder or anything under it, and a
    directory holding mirror-like files (.zip, .json) that an earlier run of this generator did not
    write: they are only overwritten when the manifest there lists them."""
    folder = repository_data_folder(out)
    if folder is not None:
        raise ValueError(f"{out}: inside {folder}, a dataset repository's data folder, which holds only shards "
                         "built from the real sources; write the mirror somewhere else")
    if not out.is_dir():
        return
    manifest = out / MANIFEST_NAME
    listed: set = set()
    if manifest.exists():
        try:
            listed = set(json.loads(manifest.read_text())["files"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{manifest}: not a manifest written by this generator; refusing to overwrite it") from None
    for name in sorted(os.listdir(out)):
        if name.endswith((".zip", ".json")) and name != MANIFEST_NAME and name not in listed:
            raise ValueError(f"{out / name}: not written by this generator (not in {MANIFEST_NAME}); refusing to "
                             "overwrite it: choose an empty directory")


def repository_data_folder(path) -> Optional[Path]:
    """The dataset repository's data/ folder that `path` is or lies in, if any: it holds only shards
    built from the real sources, so nothing generated may be written there."""
    resolved = Path(path).resolve()
    return next((folder for folder in (resolved, *resolved.parents)
                 if folder.name == "data" and _is_dataset_repository(folder.parent)), None)  # fmt: skip


def _is_dataset_repository(folder: Path) -> bool:
    if (folder / "arr_coc_vqa.py").exists():
        return True
    readme = folder / "README.md"
    if not readme.is_file():
        return False
    front = re.match(r"---[ \t]*\r?\n(.*?)\r?\n---", readme.read_text(encoding="utf-8", errors="replace"), re.S)
    return bool(front and re.search(r"^configs:", front.group(1), re.M))


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must look like 64x48, got {text!r}") from None
    return width, height


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    return [_parse_size(part) for part in text.split(",") if part.strip()]


def _parse_sources(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in names if s not in SOURCES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"--sources: expected a comma list of {','.join(SOURCES)}, got {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="directory to write the mirror into (created if needed)")
    parser.add_argument("--images-per-split", type=int, default=6, help="images per source and split (default 6)")
    parser.add_argument("--questions-per-image", type=int, default=3, help="VQAv2/GQA questions per image (default 3)")
    parser.add_argument("--image-size", type=_parse_size, default=(64, 48), help="WxH of generated images (default 64x48)")
    parser.add_argument("--image-sizes", type=_parse_sizes, default=None, metavar="WxH,WxH,...",
                        help="several sizes instead of --image-size: each image gets one of them, chosen per image id")
    for source in SOURCES:
        parser.add_argument(f"--{source}-images", type=int, default=None, metavar="N",
                            help=f"images per split for {source} (overrides --images-per-split)")
    parser.add_argument("--sources", type=_parse_sources, default=SOURCES, help="comma list (default: all four)")
    parser.add_argument("--no-broken", dest="broken", action="store_false", help="leave out the broken cases")
    parser.add_argument("--near-duplicates", action="store_true",
                        help="plant four re-hosted copies under other ids (two as n... members of images.zip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = {s: getattr(args, f"{s}_images") for s in SOURCES if getattr(args, f"{s}_images") is not None}
    try:
        write_sample_mirror(args.out_dir, images_per_split=args.images_per_split,
                            questions_per_image=args.questions_per_image, image_size=args.image_size,
                            images=overrides or None, sources=args.sources, broken=args.broken, seed=args.seed,
                            image_sizes=args.image_sizes, near_duplicates=args.near_duplicates)
    except (ValueError, OSError) as exc:
        log.error("make_sample_mirror: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
