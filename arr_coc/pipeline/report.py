"""`data/<config>/build_report.json`: what the build read, wrote and skipped."""

from ..schema import SOURCES, SPLITS
from .agreement import LOW_AGREEMENT
from .decontamination import RULES


class ReportInvariantError(AssertionError):
    pass


def build_report(config_name: str, overrides: dict, source_stats: dict, split_rows: dict, split_shards: dict) -> dict:
    report = {
        "config": config_name,
        "config_overrides": overrides,
        "sources": {source: source_stats[source] for source in SOURCES if source in source_stats},
        # Not in the contract's minimum; handy to compare with the card without opening Parquet.
        "splits": {split: {"rows": split_rows[split], "shards": split_shards[split]} for split in SPLITS},
    }
    check_invariant(report, split_rows)
    return report


def check_invariant(report: dict, split_rows: dict) -> None:
    """items_selected == items_written + sum(skipped) <= items_total everywhere, the answer_counts
    histogram holds the written and low_agreement questions, and the rows add up."""
    rows = dict.fromkeys(split_rows, 0)
    for source, splits in report["sources"].items():
        for split, stats in splits.items():
            accounted = stats["items_written"] + sum(stats["skipped"].values())
            if stats["items_selected"] != accounted:
                raise ReportInvariantError(
                    f"{source}/{split}: {stats['items_selected']} items selected but {accounted} written or skipped"
                )
            if stats["items_selected"] > stats["items_total"]:
                raise ReportInvariantError(
                    f"{source}/{split}: {stats['items_selected']} items selected of only {stats['items_total']} in the source"
                )
            if "answer_counts" in stats:
                checked = stats["items_written"] + stats["skipped"].get(LOW_AGREEMENT, 0)
                if sum(stats["answer_counts"].values()) != checked:
                    raise ReportInvariantError(
                        f"{source}/{split}: answer_counts holds {sum(stats['answer_counts'].values())} questions, "
                        f"not the {checked} written or {LOW_AGREEMENT}"
                    )
            rows[split] += stats["rows_written"]
    if rows != split_rows:
        raise ReportInvariantError(f"rows counted by the sources {rows} differ from the rows written {split_rows}")


def decontamination_report(read: dict, source_stats: dict, images_skipped: dict) -> dict:
    """The top-level "decontamination" object (DESIGN.md, "Leakage control").

    `read`: whether it was on, the id files read ("archive/member" -> counts) and how many Visual
    Genome images map to a COCO id; then, per source and split, the images and items it removed
    (the same items the "skipped" counts show under `eval_overlap` / `train_overlap`).
    """
    removed = {}
    for source in SOURCES:
        for split in SPLITS:
            stats = source_stats.get(source, {}).get(split)
            if stats is None:
                continue
            reason = RULES[split][0]
            removed.setdefault(source, {})[split] = {
                "reason": reason,
                "images": images_skipped.get(source, {}).get(split, {}).get(reason, 0),
                "items": stats["skipped"].get(reason, 0),
            }
    # GQA's `n...` images (testdev/test photos) are no Visual Genome images: no id map covers them.
    unchecked = {split: images_skipped.get("gqa", {}).get(split, {}).get("unchecked", 0) for split in SPLITS
                 if split in source_stats.get("gqa", {})}
    return {
        "enabled": read["enabled"],
        "files": read["files"],
        "visual_genome_images_with_coco_id": read["visual_genome_images_with_coco_id"],
        "removed": removed,
        "gqa_images_without_id_map": unchecked if read["enabled"] else {},
    }
