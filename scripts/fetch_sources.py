#!/usr/bin/env python
"""Mirror the official source files into a directory once, so that every build reads them from disk.

    python scripts/fetch_sources.py OUT_DIR [--sources vqav2,gqa,okvqa,coco] [--from BASE_URL]
                                    [--dry-run] [--jobs N] [--max-retries N]

Fetches the official download files (arr_coc.readers.sources.OFFICIAL_URLS), or with `--from` the same file
names from another mirror (an http(s) URL or any fsspec URL: s3://, gs://, hf://datasets/...), into
OUT_DIR in the mirror layout (flat, official base names, unextracted). It first prints every file with
its expected size, then fetches several files in parallel. Each file is written as
`NAME.incomplete`, resumed by Range requests after an interruption, checked (size; a zip must open)
and renamed to NAME only when complete; a file already in OUT_DIR costs no download. Then

    python scripts/build.py --config small --data-dir OUT_DIR

builds any config from the mirror. `--sources` fetches only what those sources need (GQA also needs
COCO's annotations and Visual Genome's image metadata, for leakage control).
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

if __name__ == "__main__":  # before the slower imports: Ctrl-C or SIGTERM now is one line and 128 + signum
    from arr_coc.process.interrupts import exit_on_interrupt, signal_name

    exit_on_interrupt(lambda signum: f"interrupted ({signal_name(signum)}); nothing was fetched")

import argparse  # noqa: E402
import logging  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Optional, Sequence  # noqa: E402

from tqdm.auto import tqdm  # noqa: E402

from arr_coc import schema  # noqa: E402
from arr_coc.network.download import INCOMPLETE_SUFFIX, download, remove_held_locks  # noqa: E402
from arr_coc.network.remote import check_protocol, is_url, join_location  # noqa: E402
from arr_coc.network.retry import NotThere, RetryPolicy, filesystem_for, with_retries  # noqa: E402
from arr_coc.process.cli import non_negative_int, positive_int  # noqa: E402
from arr_coc.process.interrupts import exit_on_interrupt, ignore_interrupts_from_now_on, interrupts_raise, signal_of, wait_for  # noqa: E402
from arr_coc.readers import sources  # noqa: E402

logger = logging.getLogger("fetch_sources")

# Files a source reads beyond its own questions, annotations and images: GQA's leakage control
# (DESIGN.md, "Leakage control") maps GQA images to COCO photos with Visual Genome's image metadata
# and checks them against COCO's caption image lists. Only names the URL table knows are fetched, so
# a file joins the mirror as soon as sources.OFFICIAL_URLS lists it.
LEAKAGE_CONTROL_FILES = {"gqa": ("annotations_trainval2014.zip", "image_data.json.zip")}
DEFAULT_JOBS = 4
INTERRUPTED = "interrupted; run the same command again to resume (partial files are kept)"


@dataclass(frozen=True)
class PlannedFile:
    """One file of the mirror: where it comes from, and what this run has to do for it."""

    name: str
    url: str
    dest: str
    size: Optional[int]  # None when the source announces no size
    action: str  # "fetch", "resume", "complete" (skipped), or "fail"
    on_disk: int = 0  # bytes of a partial download already in OUT_DIR
    problem: Optional[str] = None  # why it fails, for action "fail"


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if __name__ == "__main__":  # what interrupts_raise() puts back: the last prints and shutdown stay covered
        exit_on_interrupt(lambda signum: INTERRUPTED)
    try:
        with interrupts_raise(lambda signum: tqdm.write(f"error: {INTERRUPTED}", file=sys.stderr)):  # SIGTERM like Ctrl-C
            return fetch(args)
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM as arr_coc.process.interrupts.Interrupted
        # Worker threads would go on downloading: leave now; the partial files resume next time, and
        # the lock files those threads hold go (os._exit runs no `finally`).
        remove_held_locks()
        # tqdm.write: on its own line, not glued to a progress bar still drawn by another thread.
        tqdm.write(f"error: {INTERRUPTED}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signal_of(error))
    except Exception as error:  # noqa: BLE001 - every failure becomes one line and a non-zero exit
        print(f"error: {one_line(error)}", file=sys.stderr)
        logger.debug("fetch failed", exc_info=True)
        return 1


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the mirror directory to fill (created if needed)")
    parser.add_argument("--sources", type=_source_list, help="only the files these sources need, e.g. okvqa,coco (default: every file)")
    parser.add_argument("--from", dest="base_url", metavar="BASE_URL", help="fetch the same names from this mirror URL instead of the official hosts")
    parser.add_argument("--dry-run", action="store_true", help="print what would be fetched, with sizes, and fetch nothing")
    parser.add_argument("--jobs", type=positive_int, default=DEFAULT_JOBS, help=f"files fetched in parallel (default {DEFAULT_JOBS})")
    parser.add_argument("--max-retries", type=non_negative_int, help="retries of one network read (default: the retry policy's)")
    return parser.parse_args(argv)


def fetch(args: argparse.Namespace) -> int:
    out_dir = _out_dir(args.out_dir)
    if args.base_url is not None:
        _check_base_url(args.base_url)
    policy = RetryPolicy.from_env(max_retries=args.max_retries)
    names = mirror_files(args.sources)
    pool = ThreadPoolExecutor(max_workers=args.jobs)  # sizes and downloads, a few files at a time
    try:
        plan = _in_parallel(pool, lambda name: plan_file(name, args.base_url, out_dir, policy), names)
        print_plan(plan, args.base_url or "the official URLs", out_dir)
        if args.dry_run:
            return _finish(plan, [], dry_run=True)
        todo = [planned for planned in plan if planned.action in ("fetch", "resume")]
        if todo:
            os.makedirs(out_dir, exist_ok=True)
        failures = [(planned.name, reason) for planned, reason in zip(todo, _in_parallel(pool, lambda p: fetch_file(p, policy), todo)) if reason]
    finally:
        # Not `with`: on Ctrl-C it would wait for every running download to finish.
        pool.shutdown(wait=False, cancel_futures=True)
    return _finish(plan, failures, dry_run=False, out_dir=out_dir)


def _in_parallel(pool: ThreadPoolExecutor, fn, items: Sequence) -> list:
    """list(pool.map(fn, items)), waited for with interrupts.wait_for: pool.map's untimed wait would not
    see a Ctrl-C that one of the download threads took, and the fetch would hang on a stalled file."""
    futures = [pool.submit(fn, item) for item in items]
    wait_for(futures)
    return [future.result() for future in futures]


def mirror_files(selected: Optional[Sequence[str]]) -> list[str]:
    """The file names to fetch, in the URL table's order: all of them, or what `selected` sources read."""
    if selected is None:
        return list(sources.OFFICIAL_URLS)
    needed = set()
    for source in selected:
        for split in schema.SPLITS:
            files = sources.source_files(source, split)
            needed.update(member.archive for member in (files.questions, files.annotations) if member is not None)
            needed.add(files.image_archive)
        needed.update(LEAKAGE_CONTROL_FILES.get(source, ()))
    return [name for name in sources.OFFICIAL_URLS if name in needed]


def plan_file(name: str, base_url: Optional[str], out_dir: str, policy: RetryPolicy) -> PlannedFile:
    url = join_location(base_url, name) if base_url is not None else sources.OFFICIAL_URLS[name]
    dest = os.path.join(out_dir, name)
    try:
        size = remote_size(url, policy)
    except Exception as error:  # noqa: BLE001 - one file's failure is reported with the others
        problem = f"{url}: not found at the source" if isinstance(error, NotThere) else one_line(error)
        if os.path.exists(dest):  # renamed into place only when it was complete: keep using it
            logger.warning("%s: kept as it is; the source could not be checked: %s", dest, problem)
            return PlannedFile(name, url, dest, None, "complete")
        return PlannedFile(name, url, dest, None, "fail", problem=problem)
    if os.path.exists(dest):
        have = os.path.getsize(dest)
        if size is None or have == size:
            return PlannedFile(name, url, dest, size, "complete")
        # Not ours to replace: it may be a file the user put there.
        problem = f"{dest} has {have} bytes but {url} has {size}: move it away to fetch it again"
        return PlannedFile(name, url, dest, size, "fail", problem=problem)
    partial = dest + INCOMPLETE_SUFFIX
    on_disk = os.path.getsize(partial) if os.path.exists(partial) else 0
    return PlannedFile(name, url, dest, size, "resume" if on_disk else "fetch", on_disk=on_disk)


def remote_size(url: str, policy: RetryPolicy) -> Optional[int]:
    """The size the source announces (HEAD for http(s), the object's metadata elsewhere), or None."""
    fs, path = filesystem_for(url, policy)
    info = with_retries(lambda: fs.info(path), url=url, policy=policy)
    size = info.get("size")
    return int(size) if size is not None else None


def fetch_file(planned: PlannedFile, policy: RetryPolicy) -> Optional[str]:
    """Download one file into place; the one-line reason when it failed, None when it is complete."""
    try:
        # A mirror holds only the files: no version record beside them (download leaves no lock either).
        download(planned.url, planned.dest, policy=policy, progress=True, keep_version=False)
    except Exception as error:  # noqa: BLE001 - the other files go on; the failure is reported at the end
        reason = one_line(error)
        logger.error("%s", reason)
        return reason
    logger.info("%s: complete", planned.dest)
    return None


def print_plan(plan: list[PlannedFile], origin: str, out_dir: str) -> None:
    to_fetch = [p for p in plan if p.action in ("fetch", "resume")]
    known = [p.size - p.on_disk for p in to_fetch if p.size is not None]
    unknown = len(to_fetch) - len(known)
    total = human_size(sum(known)) + (f" + {unknown} of unknown size" if unknown else "")
    print(f"{len(plan)} files from {origin} into {out_dir}: {len(to_fetch)} to fetch ({total}), "
          f"{sum(p.action == 'complete' for p in plan)} already complete")
    width = max((len(p.name) for p in plan), default=0)
    for planned in plan:
        size = "unknown" if planned.size is None else f"{human_size(planned.size)} ({planned.size} bytes)"
        what = {
            "fetch": "fetch",
            "resume": f"resume after {planned.on_disk} bytes on disk",
            "complete": "complete, skipped",
            "fail": f"FAILS: {planned.problem}",
        }[planned.action]
        print(f"  {planned.name:<{width}}  {size:>28}  {what}")
    sys.stdout.flush()


def _finish(plan: list[PlannedFile], failures: list[tuple[str, str]], dry_run: bool, out_dir: str = "") -> int:
    failed = [(p.name, p.problem) for p in plan if p.action == "fail"] + failures
    if failed:
        more = f" (and {len(failed) - 1} more failed file(s), listed above)" if len(failed) > 1 else ""
        print(f"error: {failed[0][1]}{more}", file=sys.stderr)
        return 1
    if not dry_run:
        print(f"mirror complete in {out_dir}; build with: python scripts/build.py --config small --data-dir {out_dir}")
    return 0


def human_size(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def one_line(error: BaseException) -> str:
    """Our own errors already name the file in one line; anything else gets its type in front."""
    if isinstance(error, (ValueError, OSError)) and str(error):
        return " ".join(str(error).split())
    return " ".join(f"{type(error).__name__}: {error}".split())


def _out_dir(text: str) -> str:
    if is_url(text):
        raise ValueError(f"{text}: OUT_DIR must be a local directory (a mirror in object storage is filled with that store's own tools)")
    return os.path.abspath(os.path.expanduser(text))


def _check_base_url(base_url: str) -> None:
    if not is_url(base_url):
        raise ValueError(f"--from {base_url}: expected an http(s) or fsspec URL; a local mirror directory is used as --data-dir directly")
    check_protocol(base_url)


def _source_list(text: str) -> tuple:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in schema.SOURCES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected some of {','.join(schema.SOURCES)}, got {text!r}")
    return names


if __name__ == "__main__":
    exit_code = main()
    ignore_interrupts_from_now_on()
    sys.exit(exit_code)
