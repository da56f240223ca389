"""The manifest: what a correct build of the mirror should see (sample_mirror_manifest.json).

The expectations come from the plans, not from reading the written files back, so they check the writers
rather than echo them: per source and split the image ids, item totals and the items a build must skip
(with the builder's skip precedence), and which records carry which format quirk.  Only each file's size
and sha256 are read from disk.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

from sample_mirror import okvqa, vqav2
from sample_mirror.gqa import GqaIds
from sample_mirror.names import OVERLAP_REASON, SOURCES, SPLITS
from sample_mirror.plan import SplitPlan
from sample_mirror.real_records import GQA_REAL_TRAIN, GQA_REAL_VAL, OKVQA_REAL_QUESTIONS


def build_manifest(out: Path, files: list[str], plans: dict, coco_zips: dict, gqa_zip, gqa_ids, counts: dict,
                   params: dict) -> dict:
    """The manifest of a written mirror; `params` are write_sample_mirror's arguments as recorded."""
    sources_out: dict[str, dict] = {}
    for source in SOURCES:
        for split in SPLITS:
            plan = plans.get((source, split))
            if plan is None:
                continue
            zip_plan = gqa_zip if source == "gqa" else coco_zips[split]
            per_image = params["questions_per_image"]
            total, skipped = _expected_skips(plan, per_image)
            if source == "gqa":  # leakage control's skips, with their image ids and the whole id map
                skipped[OVERLAP_REASON[split]] = per_image * len(plan.overlap)
            entry = {
                "original_split": plan.original_split,
                "image_archive": zip_plan.name,
                "image_ids": [str(i) for i in plan.image_ids],
                "items_total": total,
                "expected_skipped": skipped,
                "broken": {"missing_image": [str(i) for i in sorted(plan.missing, key=str)],
                           "corrupt_image": [str(i) for i in sorted(plan.corrupt, key=str)],
                           "no_annotation": [str(q) for q in sorted(plan.orphans)]},
                "image_modes": {str(i): zip_plan.modes[i] for i in plan.image_ids if i in zip_plan.modes},
            }
            if source in ("vqav2", "okvqa"):
                entry["expected_answer_counts"] = _expected_answer_counts(plan, params["seed"])
            if source == "gqa":
                entry["overlap"] = {OVERLAP_REASON[split]: list(plan.overlap)}
                entry["coco_ids"] = {str(i): (None if c is None else str(c)) for i, c in plan.coco_ids.items()}
            sources_out.setdefault(source, {})[split] = entry
    resolved = {s: counts[s] for s in params["sources"]}
    return {
        "seed": params["seed"],
        "params": {**params, "images": resolved},
        "files": {name: {"bytes": (out / name).stat().st_size, "sha256": _sha256(out / name)} for name in sorted(files)},
        "sources": sources_out,
        "quirks": _quirk_notes(plans, gqa_ids),
    }


def _expected_skips(plan: SplitPlan, per_image: int) -> tuple[int, dict]:
    """(items_total, expected_skipped) with the builder's skip precedence: no_annotation before image
    problems; an item counts once."""
    skipped = {"missing_image": 0, "corrupt_image": 0, "no_annotation": 0}
    if plan.source == "coco":
        skipped["missing_image"] = len(plan.missing)
        skipped["corrupt_image"] = len(plan.corrupt)
        return len(plan.image_ids), skipped
    if plan.source == "gqa":
        per = {i: per_image for i in plan.image_ids}
    else:
        per = {i: len(plan.questions[i]) for i in plan.image_ids}
    total = sum(per.values()) + len(plan.orphans)
    skipped["no_annotation"] = len(plan.orphans)
    skipped["missing_image"] = sum(per[i] for i in plan.missing)
    skipped["corrupt_image"] = sum(per[i] for i in plan.corrupt)
    return total, skipped


def _expected_answer_counts(plan: SplitPlan, seed: int) -> dict:
    """The answer_counts histogram of a build that writes every question it can (healthy images,
    annotated questions): how many references agree with each target, as the records were made."""
    histogram = {str(count): 0 for count in range(11)}
    for image_id in plan.image_ids:
        if image_id in plan.missing or image_id in plan.corrupt:
            continue
        for qid in plan.questions[image_id]:
            if plan.source == "vqav2":
                annotation = vqav2.vqav2_record(seed, image_id, qid, plan.quirks)[1]
                count = vqav2.answer_count(annotation, annotation["multiple_choice_answer"], plan.quirks)
            else:
                count = okvqa.answer_count(okvqa.okvqa_record(seed, image_id, qid, plan.quirks)[1])
            histogram[str(count)] += 1
    return histogram


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _quirk_notes(plans: dict, gqa_ids: dict | None) -> dict:
    notes: dict[str, Any] = {}
    by_source = {}
    for (source, split), plan in plans.items():
        by_source.setdefault(source, {})[split] = plan
    if "vqav2" in by_source:
        notes["vqav2"] = {
            "questions_not_in_question_id_order": "both question files and both annotation files are shuffled "
                                                  "(train starts with 458752000); questions and annotations differ in order",
            "answers0_differs_from_mca": {s: p.quirks["answers0_differs_from_mca"] for s, p in by_source["vqav2"].items()},
            "answer_ids_listed_shuffled": {s: p.quirks["answer_ids_listed_shuffled"] for s, p in by_source["vqav2"].items()},
            **{name: {s: p.quirks[name] for s, p in by_source["vqav2"].items()}
               for name in ("some_references_spell_the_answer_differently", "all_references_spell_the_answer_differently")},
            "answer_types": ["yes/no", "number", "other"],
            "annotation_headers_after_list": "data_type follows the annotations list",
            "real_records": [458752000, 393714000, 263006000, 263006001],
        }
    if "okvqa" in by_source:
        notes["okvqa"] = {
            "majority_tie_first_wins": {s: p.quirks["majority_tie_first_wins"] for s, p in by_source["okvqa"].items()},
            "question_type_not_in_map": {s: p.quirks["question_type_not_in_map"] for s, p in by_source["okvqa"].items()},
            "question_types_position": {"train": "after annotations", "validation": "before annotations"},
            "raw_answer_differs_from_answer": "e.g. 'pony tail' -> 'ponytail', 'braids' -> 'braid'",
            "real_records": sorted(OKVQA_REAL_QUESTIONS),
        }
    if gqa_ids is not None:
        n_prefixed = {s: [i for i in p.image_ids if i.startswith("n")] for s, p in by_source["gqa"].items()}
        notes["gqa"] = {
            "leading_zero_ids": "all question ids are 8-digit zero-padded strings, e.g. "
                                + ", ".join(q for s in SPLITS for q in list(_first_qids(gqa_ids[s]))[:1]),
            "n_prefixed_image_ids": n_prefixed,
            "groups_global_null": "verify/logical/compare questions, e.g. 02930152",
            "slice_annotation_keys": "two-word object names give keys like '3:5'",
            "val_records_sorted_keys": "val_balanced records are written with sorted keys, train ones in the real train order",
            "decoy_members": ["train_all_questions/train_all_questions_0.json", "train_all_questions/train_all_questions_1.json",
                              "val_all_questions.json", "testdev_balanced_questions.json",
                              "test_balanced_questions.json", "challenge_balanced_questions.json"],
            "decoy_images_in_images_zip": "testdev/test/challenge images are in images.zip but in no balanced file",
            "real_records": {"train": GQA_REAL_TRAIN[0], "validation": GQA_REAL_VAL[0]},
        }
    if "coco" in by_source:
        notes["coco"] = {name: {s: p.quirks.get(name, []) for s, p in by_source["coco"].items()}
                         for name in ("newline", "space_runs", "leading_trailing_spaces", "more_than_5_captions")}
        notes["coco"]["captions_ascending_id_not_grouped_by_image"] = True
        notes["coco"]["real_records"] = {"train_captions": [48, 67, 126, 148], "validation_captions": [37, 38, 49],
                                         "validation_images": [391895, 522418]}
    notes["images"] = {"zip_folder_entries": "every image zip starts with its folder entry (e.g. 'train2014/')",
                       "modes": "one grayscale (L), one CMYK and one PNG-encoded .jpg per image zip split; see image_modes"}
    return notes


def _first_qids(ids: GqaIds) -> Iterator[str]:
    for qids in ids.per_image.values():
        yield from qids
