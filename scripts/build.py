#!/usr/bin/env python
"""Build a config of arr-coc-vqa-training and export it as the Hub repository's Parquet shards.

    python scripts/build.py --config small|full [--data-dir DIR_OR_URL] [--output-dir REPO_DIR]
                            [--num-proc N] [--num-shards N] [--cache-dir DIR] [--max-retries N]
                            [--retry-max-seconds S] [config overrides, e.g. --max-images-train 10]

Writes REPO_DIR/data/<config>/<split>-NNNNN-of-NNNNN-<source>.parquet (numbered across the split's
sources so that sorted names interleave them) and data/<config>/build_report.json, and updates
REPO_DIR/README.md's YAML (this config's `configs:` and `dataset_info:` entries). The build happens in
a staging directory and is swapped in only when it has fully succeeded, replacing the whole
data/<config>/ (an older layout's files included): a failed or interrupted build leaves the previous
shards, report and README exactly as they were.
Downloads (annotation archives; whole image archives for an uncapped build from the official URLs)
go to a persistent cache, CACHE_DIR/downloads, which failed builds keep and later builds reuse.
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

if __name__ == "__main__":  # before the slow imports (datasets): Ctrl-C or SIGTERM now is one line and 128 + signum
    from arr_coc.process import interrupts

    interrupts.exit_on_interrupt(lambda signum: f"interrupted ({interrupts.signal_name(signum)}); nothing was changed")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import typing  # noqa: E402
from typing import Optional  # noqa: E402

import datasets  # noqa: E402
from datasets.splits import SplitDict, SplitInfo  # noqa: E402

from arr_coc.network.download import downloads_dir  # noqa: E402
from arr_coc.network.retry import NetworkError, RetryPolicy  # noqa: E402
from arr_coc.pipeline.report import ReportInvariantError, build_report  # noqa: E402
from arr_coc.process.cli import non_negative_int, positive_int  # noqa: E402
from arr_coc.process.errors import SourceFormatError, exception_chain  # noqa: E402
from arr_coc.process.interrupts import (  # noqa: E402
    Interrupted,
    exit_on_interrupt,
    ignore_interrupts_from_now_on,
    interrupts_raise,
    release_quietly,
    signal_name,
    signal_of,
)
from arr_coc.publish import swap  # noqa: E402
from arr_coc.publish.card import updated_card  # noqa: E402
from arr_coc.publish.export import write_split  # noqa: E402
from arr_coc.publish.staging import discard, remove_stale, repository_lock, staging_directory  # noqa: E402
from arr_coc.schema import FEATURES, SPLITS  # noqa: E402
from arr_coc_vqa import ArrCocVqa, ArrCocVqaConfig  # noqa: E402

logger = logging.getLogger("build")

CONFIG_NAMES = list(ArrCocVqa.builder_configs)
# BuilderConfig's own fields are not dataset options (data_dir has its own flag).
_BASE_FIELDS = {field.name for field in dataclasses.fields(datasets.BuilderConfig)}
OVERRIDE_FIELDS = [field for field in dataclasses.fields(ArrCocVqaConfig) if field.name not in _BASE_FIELDS]


class BuildError(Exception):
    """A failure to report in one line."""


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    progress = BuildProgress()
    if __name__ == "__main__":
        # What interrupts_raise() puts back when the build is over: a signal during the last prints or
        # interpreter shutdown says what happened (the build complete, or the previous one untouched) in
        # one line with 128 + signum, like one during the build. Callers in-process keep their own handlers.
        exit_on_interrupt(lambda signum: _failure_message(Interrupted(signum), signum, progress))
    with interrupts_raise(_stop_now(progress)):
        try:
            summary = build(args, progress)
        except BaseException as error:  # noqa: BLE001 - every failure becomes one line and a non-zero exit
            signum = signal_of(error)
            if signum is None and not isinstance(error, Exception):
                raise  # SystemExit and the like
            print(f"error: {_failure_message(error, signum, progress)}", file=sys.stderr)
            logger.debug("build failed", exc_info=True)
            release_quietly(error)  # what the failure left half-built must not print after the line
            return 128 + signum if signum is not None else 1
    print(summary)
    return 0


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, choices=CONFIG_NAMES, help="which config to build")
    parser.add_argument("--data-dir", help="source mirror: a directory, or an http(s)/s3/gs/hf base URL (default: the official URLs)")
    parser.add_argument("--output-dir", default=REPO_ROOT, help="repository directory to write into (default: this repo)")
    parser.add_argument("--num-proc", type=positive_int, default=1, help="build shards in N processes")
    parser.add_argument("--num-shards", type=positive_int, help="Parquet shards per source and split (default: the contract's rule)")
    parser.add_argument(
        "--cache-dir",
        help="where downloads are kept, in CACHE_DIR/downloads, across builds and configs "
        "(default: the datasets cache, HF_DATASETS_CACHE, normally ~/.cache/huggingface/datasets)",
    )
    parser.add_argument(
        "--max-retries",
        type=non_negative_int,
        help="retries of a failed network read after its first attempt (default: ARR_COC_MAX_RETRIES or 7)",
    )
    parser.add_argument(
        "--retry-max-seconds",
        type=float,
        help="time budget of one network read, retries and waits included (default: ARR_COC_RETRY_MAX_SECONDS or 900)",
    )
    overrides = parser.add_argument_group("config overrides (default: the config's own value)")
    for field in OVERRIDE_FIELDS:
        if field.type is bool:  # --decontaminate / --no-decontaminate
            overrides.add_argument(
                "--" + field.name.replace("_", "-"), dest=field.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS
            )
            continue
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


@dataclasses.dataclass
class BuildProgress:
    """How far a build got, for the message when it is interrupted."""

    swapped: bool = False
    staging: Optional[str] = None  # this build's staging directory, once made


def build(args: argparse.Namespace, progress: BuildProgress) -> str:
    repo = os.path.abspath(args.output_dir)
    os.makedirs(repo, exist_ok=True)
    remove_stale(repo)  # and finish the swap of a build that was killed in one
    splits = _splits_to_write(args)
    _check_card(repo, args.config, splits)
    with staging_directory(repo, args.config) as staging:
        progress.staging = staging
        # Downloads persist in the shared cache; the staging directory holds only this build's own output
        # (its Arrow cache, so that every build regenerates and counts its rows, and the shards).
        download_config = datasets.DownloadConfig(cache_dir=downloads_dir(args.cache_dir))
        builder = ArrCocVqa(
            config_name=args.config, data_dir=args.data_dir, cache_dir=os.path.join(staging, "cache"), **args.overrides
        )
        try:
            with _retry_policy_in_environment(args):
                builder.download_and_prepare(
                    num_proc=args.num_proc if args.num_proc > 1 else None, download_config=download_config
                )
        except Exception as error:
            reasons = builder.build_failures()
            if reasons:
                raise BuildError(reasons[0]) from error
            raise
        built = _built_splits(builder, splits)
        shards_dir = os.path.join(staging, "data", args.config)
        info, source_infos, split_rows, split_shards = _export(built, shards_dir, args)
        for split in SPLITS:  # a split left out on request: in the report with 0 rows, not in the card
            split_rows.setdefault(split, 0), split_shards.setdefault(split, {})
        report = build_report(args.config, args.overrides, builder.build_stats(), split_rows, split_shards)
        report["decontamination"] = builder.decontamination_report()
        report["near_duplicates"] = builder.near_duplicates_report()
        with open(os.path.join(shards_dir, "build_report.json"), "w") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
        del built, builder  # release the memory-mapped Arrow files before the swap
        _swap_in_with_card(repo, args.config, staging, info, splits, progress, source_infos)
    return _summary(args.config, repo, split_rows, split_shards, report)


@contextlib.contextmanager
def _retry_policy_in_environment(args):
    """The retry flags as the environment variables every network read (also in `num_proc` workers) reads."""
    policy = RetryPolicy.from_env(max_retries=args.max_retries, max_seconds=args.retry_max_seconds)
    saved = dict(os.environ)
    os.environ.update(policy.environ())
    try:
        yield policy
    finally:
        for name in policy.environ():
            if name in saved:
                os.environ[name] = saved[name]
            else:
                os.environ.pop(name, None)


def _export(built: datasets.DatasetDict, shards_dir: str, args) -> tuple[datasets.DatasetInfo, dict, dict, dict]:
    """Write every split's shards, one family per source, and describe them for the card and report.

    Returns the config's DatasetInfo, one DatasetInfo per source (the per-source configs' entries,
    splits where the source has rows), rows per split, and shards per split and source.
    """
    families = [family for split in built for family in write_split(built[split], split, shards_dir, args.num_shards)]
    info = _dataset_info(args.config, families)
    source_infos = {source: _dataset_info(source, [f for f in families if f.source == source]) for source in _sources(families)}
    split_rows = {split: len(built[split]) for split in built}
    split_shards = {split: {f.source: len(f.paths) for f in families if f.split == split} for split in built}
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


def _splits_to_write(args: argparse.Namespace) -> list[str]:
    """The splits this build exports: a split whose image cap is 0 was asked to be left out."""
    config = ArrCocVqa.builder_configs[args.config]
    caps = {split: args.overrides.get(f"max_images_{split}", getattr(config, f"max_images_{split}")) for split in SPLITS}
    splits = [split for split in SPLITS if caps[split] != 0]
    if not splits:
        raise BuildError("every split has an image cap of 0 (--max-images-train/--max-images-validation): nothing to build")
    return splits


def _built_splits(builder: ArrCocVqa, splits: list[str]) -> datasets.DatasetDict:
    """The built splits to export; one that came out empty is an error, not an empty split.

    datasets 5.2 cannot load a split whose files hold no rows ("Instruction ... corresponds to no
    data!", with a 0-row Parquet file too), so the Hub repository must not have one."""
    built = datasets.DatasetDict()
    for split in splits:
        if builder.info.splits[split].num_examples:
            built[split] = builder.as_dataset(split=split)  # minus the rows near_duplicate_distance skips
        if split not in built or len(built[split]) == 0:
            raise BuildError(f"the {split} split has no rows: {_skips(builder.build_stats(), split)}; "
                             f"nothing written (--max-images-{split} 0 builds without the split)")
    return built


def _skips(stats: dict, split: str) -> str:
    parts = []
    for source, per_split in stats.items():
        if split in per_split:
            counts = per_split[split]
            reasons = _skipped_text(counts["skipped"])
            parts.append(f"{source} {counts['items_selected']} items selected" + (f" ({reasons} skipped)" if reasons else ""))
    return "; ".join(parts) or "no source has items for it"


def _skipped_text(skipped: dict) -> str:
    """"missing_image 6, corrupt_image 1": a build report's skip counts, in its order."""
    return ", ".join(f"{reason} {count}" for reason, count in skipped.items())


def _swap_in_with_card(
    repo: str, config: str, staging: str, info, splits: list[str], progress: BuildProgress, source_infos: dict
) -> None:
    """Write the new card next to the new shards and swap both in, all or nothing (arr_coc/publish/swap.py).

    The README is read under the repository lock, so a concurrent build of another config that
    swapped in meanwhile keeps its entries."""
    readme_path = os.path.join(repo, "README.md")
    with repository_lock(repo):
        readme = _read_text(readme_path)
        with open(os.path.join(staging, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(updated_card(readme, config, info, splits, source_infos, readme_path=readme_path))
        with swap.held_signals():  # a signal held back by the swap comes once `swapped` tells the truth
            swap.swap_in(repo, config, staging)
            progress.swapped = True


def _check_card(repo: str, config: str, splits: list[str]) -> None:
    """Fail before building, not after, when README.md's front matter cannot be updated."""
    readme_path = os.path.join(repo, "README.md")
    placeholder = datasets.DatasetInfo(config_name=config, features=FEATURES, splits=SplitDict())
    updated_card(_read_text(readme_path), config, placeholder, splits, readme_path=readme_path)


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as error:
        raise BuildError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _stop_now(progress: BuildProgress):
    """What an interrupt does when worker processes run (see arr_coc/process/interrupts.py): remove our
    staging folder and print the one line; the caller then exits."""

    def stop(signum: int) -> None:
        if progress.staging:
            discard(progress.staging)
        # On a line of its own: a progress bar may be half-drawn.
        print(f"\nerror: {_failure_message(Interrupted(signum), signum, progress)}", file=sys.stderr, flush=True)

    return stop


def _failure_message(error: BaseException, signum: Optional[int], progress: BuildProgress) -> str:
    if progress.staging and swap.pending(progress.staging):  # the swap could not be rolled back (rare: the file system failed twice)
        return (f"{one_line_reason(error)}; the swap could not be undone: the previous build is kept in {progress.staging} "
                "and the next build puts it back")
    if signum is None:
        return one_line_reason(error)
    name = signal_name(signum)
    if progress.swapped:
        return f"interrupted ({name}) after the new shards and README were swapped in; the build is complete"
    return f"interrupted ({name}); the previous shards and README are untouched"


def one_line_reason(error: BaseException) -> str:
    """The most telling message in the exception chain (datasets wraps builder errors)."""
    chain = exception_chain(error)
    for kind in (BuildError, NetworkError, SourceFormatError, FileNotFoundError, ReportInvariantError, ValueError):
        for candidate in chain:
            if isinstance(candidate, kind):
                return " ".join(str(candidate).split())
    notes = [note for candidate in chain for note in getattr(candidate, "__notes__", ())]
    where = f"{notes[0]}: " if notes else ""  # e.g. "reading s3://bucket/mirror/...: NoCredentialsError: ..."
    return " ".join(f"{where}{type(chain[-1]).__name__}: {chain[-1]}".split())


def _summary(config: str, repo: str, split_rows: dict, split_shards: dict, report: dict) -> str:
    lines = [f"built {config} into {os.path.join(repo, 'data', config)}"]
    for split in SPLITS:
        if split_shards[split]:
            per_source = ", ".join(f"{source} {count}" for source, count in split_shards[split].items())
            lines.append(f"  {split}: {split_rows[split]} rows in {sum(split_shards[split].values())} shards ({per_source})")
        else:
            lines.append(f"  {split}: not written (image cap 0)")
    for source, per_split in report["sources"].items():
        for split, stats in per_split.items():
            skipped = _skipped_text(stats["skipped"]) or "none skipped"
            lines.append(f"  {source}/{split}: {stats['items_written']} of {stats['items_selected']} items written ({skipped})")
    return "\n".join(lines)


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
    if float in kinds:
        return _parse_float
    return str


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _metavar(field: dataclasses.Field) -> str:
    if field.name == "sources":
        return "vqav2,gqa,okvqa,coco"
    return "N|none" if type(None) in typing.get_args(field.type) else field.name.upper()


if __name__ == "__main__":
    exit_code = main()
    ignore_interrupts_from_now_on()
    sys.exit(exit_code)
