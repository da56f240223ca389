#!/usr/bin/env python
"""Build a config of arr-coc-vqa-training and export it as the Hub repository's Parquet shards.

    python scripts/build.py --config small|full [--data-dir DIR_OR_URL] [--output-dir REPO_DIR]
                            [--num-proc N] [--num-shards N] [config overrides, e.g. --max-images-train 10]

Writes REPO_DIR/data/<config>/<split>-<source>-NNNNN-of-NNNNN.parquet and data/<config>/build_report.json,
and updates REPO_DIR/README.md's YAML (this config's `configs:` and `dataset_info:` entries). The
build happens in a staging directory and is swapped in only when it has fully succeeded: a failed
or interrupted build leaves the previous shards, report and README exactly as they were.
"""

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import typing
from typing import Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import datasets  # noqa: E402
from datasets.splits import SplitDict, SplitInfo  # noqa: E402

from arr_coc.card import updated_card  # noqa: E402
from arr_coc.errors import SourceFormatError  # noqa: E402
from arr_coc.export import shard_count, write_split  # noqa: E402
from arr_coc.report import ReportInvariantError, build_report  # noqa: E402
from arr_coc.schema import FEATURES, SPLITS  # noqa: E402
from arr_coc_vqa import ArrCocVqa, ArrCocVqaConfig  # noqa: E402

logger = logging.getLogger("build")

CONFIG_NAMES = [config.name for config in ArrCocVqa.BUILDER_CONFIGS]
# BuilderConfig's own fields are not dataset options (data_dir has its own flag).
_BASE_FIELDS = {field.name for field in dataclasses.fields(datasets.BuilderConfig)}
OVERRIDE_FIELDS = [field for field in dataclasses.fields(ArrCocVqaConfig) if field.name not in _BASE_FIELDS]
STAGING_DIR = ".build-staging"


class BuildError(Exception):
    """A failure to report in one line."""


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = build(args)
    except KeyboardInterrupt:
        print("error: interrupted; the previous shards and README are untouched", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every failure becomes one line and a non-zero exit
        print(f"error: {one_line_reason(error)}", file=sys.stderr)
        logger.debug("build failed", exc_info=True)
        return 1
    print(summary)
    return 0


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, choices=CONFIG_NAMES, help="which config to build")
    parser.add_argument("--data-dir", help="source mirror: a directory or http(s) base URL (default: the official URLs)")
    parser.add_argument("--output-dir", default=REPO_ROOT, help="repository directory to write into (default: this repo)")
    parser.add_argument("--num-proc", type=_positive_int, default=1, help="build shards in N processes")
    parser.add_argument("--num-shards", type=_positive_int, help="Parquet shards per split (default: the contract's rule)")
    overrides = parser.add_argument_group("config overrides (default: the config's own value)")
    for field in OVERRIDE_FIELDS:
        overrides.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            type=_parser_for(field),
            default=argparse.SUPPRESS,
            metavar=_metavar(field),
        )
    args = parser.parse_args(argv)
    args.overrides = {field.name: getattr(args, field.name) for field in OVERRIDE_FIELDS if hasattr(args, field.name)}
    return args


def build(args: argparse.Namespace) -> str:
    repo = os.path.abspath(args.output_dir)
    os.makedirs(os.path.join(repo, STAGING_DIR), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f"{args.config}-", dir=os.path.join(repo, STAGING_DIR))
    try:
        builder = ArrCocVqa(
            config_name=args.config, data_dir=args.data_dir, cache_dir=os.path.join(staging, "cache"), **args.overrides
        )
        try:
            builder.download_and_prepare(num_proc=args.num_proc if args.num_proc > 1 else None)
        except Exception as error:
            reasons = builder.build_failures()
            if reasons:
                raise BuildError(reasons[0]) from error
            raise
        built = builder.as_dataset()
        shards_dir = os.path.join(staging, "data", args.config)
        info, source_infos, split_rows, split_shards = _export(built, shards_dir, args)
        report = build_report(args.config, args.overrides, builder.build_stats(), split_rows, split_shards)
        with open(os.path.join(shards_dir, "build_report.json"), "w") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
        readme_path = os.path.join(repo, "README.md")
        readme = open(readme_path, encoding="utf-8").read() if os.path.exists(readme_path) else None
        with open(os.path.join(staging, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(updated_card(readme, args.config, info, list(SPLITS), source_infos))
        del built, builder  # release the memory-mapped Arrow files before the swap
        _swap_in(repo, args.config, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_if_empty(os.path.join(repo, STAGING_DIR))
    return _summary(args.config, repo, split_rows, split_shards, report)


def _export(built: datasets.DatasetDict, shards_dir: str, args) -> tuple[datasets.DatasetInfo, dict, dict, dict]:
    """Write every split's shards, one family per source, and describe them for the card and report.

    Returns the config's DatasetInfo, one DatasetInfo per source (the per-source configs' entries,
    splits where the source has rows), rows per split, and shards per split and source.
    """
    families = [family for split in SPLITS for family in write_split(built[split], split, shards_dir, args.num_shards)]
    info = _dataset_info(args.config, families)
    source_infos = {source: _dataset_info(source, [f for f in families if f.source == source]) for source in _sources(families)}
    split_rows = {split: len(built[split]) for split in SPLITS}
    split_shards = {split: {f.source: len(f.paths) for f in families if f.split == split} for split in SPLITS}
    return info, source_infos, split_rows, split_shards


def _sources(families) -> list[str]:
    return list(dict.fromkeys(family.source for family in families))


def _dataset_info(config_name: str, families) -> datasets.DatasetInfo:
    """DatasetInfo over some source families: split sizes add up, features are the schema's."""
    splits = SplitDict()
    for split in SPLITS:
        parts = [family for family in families if family.split == split]
        if parts:
            splits.add(SplitInfo(name=split, num_bytes=sum(f.num_bytes for f in parts), num_examples=sum(f.num_rows for f in parts)))
    return datasets.DatasetInfo(
        config_name=config_name,
        features=FEATURES,
        splits=splits,
        download_size=sum(os.path.getsize(path) for family in families for path in family.paths),
        dataset_size=sum(split.num_bytes for split in splits.values()),
    )


def _swap_in(repo: str, config: str, staging: str) -> None:
    """Replace data/<config>/ as a whole (no stale shard can survive), then the README."""
    target = os.path.join(repo, "data", config)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    previous = None
    if os.path.exists(target):
        previous = os.path.join(staging, "previous")
        os.rename(target, previous)
    try:
        os.rename(os.path.join(staging, "data", config), target)
    except OSError:
        if previous is not None:
            os.rename(previous, target)
        raise
    os.replace(os.path.join(staging, "README.md"), os.path.join(repo, "README.md"))


def one_line_reason(error: BaseException) -> str:
    """The most telling message in the exception chain (datasets wraps builder errors)."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    for kind in (BuildError, SourceFormatError, FileNotFoundError, ReportInvariantError, ValueError):
        for candidate in chain:
            if isinstance(candidate, kind):
                return " ".join(str(candidate).split())
    return " ".join(f"{type(chain[-1]).__name__}: {chain[-1]}".split())


def _summary(config: str, repo: str, split_rows: dict, split_shards: dict, report: dict) -> str:
    lines = [f"built {config} into {os.path.join(repo, 'data', config)}"]
    for split in SPLITS:
        per_source = ", ".join(f"{source} {count}" for source, count in split_shards[split].items())
        lines.append(f"  {split}: {split_rows[split]} rows in {sum(split_shards[split].values())} shards ({per_source})")
    for source, per_split in report["sources"].items():
        for split, stats in per_split.items():
            skipped = ", ".join(f"{reason} {count}" for reason, count in stats["skipped"].items()) or "none skipped"
            lines.append(f"  {source}/{split}: {stats['items_written']} of {stats['items_selected']} items written ({skipped})")
    return "\n".join(lines)


def _remove_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _parser_for(field: dataclasses.Field):
    if field.name == "sources":
        return lambda text: tuple(part.strip() for part in text.split(",") if part.strip())
    kinds = set(typing.get_args(field.type)) or {field.type}
    if int in kinds:
        optional = type(None) in kinds

        def parse_int(text: str):
            if optional and text.lower() == "none":
                return None
            try:
                return int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected an integer{' or none' if optional else ''}, got {text!r}") from None

        return parse_int
    return str


def _metavar(field: dataclasses.Field) -> str:
    if field.name == "sources":
        return "vqav2,gqa,okvqa,coco"
    return "N|none" if type(None) in typing.get_args(field.type) else field.name.upper()


if __name__ == "__main__":
    sys.exit(main())
