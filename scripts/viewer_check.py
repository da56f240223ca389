#!/usr/bin/env python
"""Developer tool: what the Hub dataset viewer shows for a local build, computed by the viewer's own code.

    python scripts/viewer_check.py --viewer /path/to/dataset-viewer --repo REPO_DIR [--config full]
                                   [--share 0.4] [--where '"source"=1']

Runs, on REPO_DIR's `data/<config>/` shards, the functions of huggingface/dataset-viewer that the Hub
runs on a Parquet dataset, imported from a checkout of that repository (`--viewer`; nothing of it is
copied here):

- the Hub's copy of the shards to `refs/convert/parquet` (`copy_parquet_files`: the files in the order
  datasets resolves the card's `data_files`, numbered 0000, 0001, ...) and their metadata files;
- the first page (`compute_first_rows_from_parquet_response`: the first 100 rows of the split, at most
  `--first-rows-max-bytes` of JSON, 200,000 in production);
- the descriptive statistics (`compute_descriptive_statistics_response`), which read the split's files
  in that order until they hold `max_split_size_bytes` (5 GB in production), here `--share` (default
  0.4) of the split's bytes as the viewer counts them (the row groups' uncompressed size);
- the filter (`build_index_file`, the same byte cap, then `validate_query_parameter` and
  `execute_filter_query` with `--where`).

It prints what each shows per split and exits 1 unless the statistics count every source of the
split and both tasks, and the first page starts with a VQA row. CI does not run it; the test suite
asserts the property itself (tests/test_shard_order.py).

What is stood in for, and why: the services' cache (MongoDB: `get_previous_step_or_raise` returns what
the earlier steps computed here), Hub downloads (`download_file_from_hub` copies the local file),
`libviewer` (a Rust extension built from crates, not on PyPI; the stand-in scans the files in the
order given, rows offset..offset+limit across them, as its `plan` in libs/libviewer/src/dataset.rs
does), DuckDB's `fts` extension (downloaded at run time: `LOAD fts` is skipped and the search index,
the only user of it, is not built) and the Hub API the index asks for the card's language.

Requirements. The viewer's code targets Python 3.14 (annotations evaluated lazily); this tool imports
it with `from __future__ import annotations` semantics, which lets Python 3.11 run it. In a venv of
its own (not the project's), with the project's packages:

    git clone https://github.com/huggingface/dataset-viewer /tmp/dataset-viewer   # any recent revision
    python3.11 -m venv /tmp/viewer-venv
    /tmp/viewer-venv/bin/pip install -r requirements.txt environs orjson pytz appdirs pymupdf pdfplumber \\
        'polars==1.39.3' async-lru prometheus-client mongoengine pymongoarrow httpx 'duckdb<2' starlette pyjwt

(polars is the viewer's own pin: polars 2 removed `Expr.flatten`, which its image statistics call.)
    /tmp/viewer-venv/bin/python scripts/viewer_check.py --viewer /tmp/dataset-viewer --repo REPO_DIR

Checked with dataset-viewer f62009e, polars 1.39.3 and duckdb 1.5.6. docs/viewer.md shows its output
on the sample mirror.
"""

import __future__

import argparse
import importlib.machinery
import logging
import os
import shutil
import sys
import tempfile
import types
import warnings
from collections import Counter
from typing import Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIEWER_SOURCES = ("libs/libcommon/src", "libs/libapi/src", "services/worker/src", "services/search/src")
DATASET = "NorthHead/arr-coc-vqa-training"
REVISION = "refs/convert/parquet"
FIRST_ROWS = {"min_cell_bytes": 100, "rows_min_number": 10, "columns_max_number": 1000}  # worker/config.py defaults
ROWS_MAX_ARROW_DATA_IN_MEMORY = 300_000_000  # chart/env/prod.yaml rowsIndex.maxArrowDataInMemory


class _LazyAnnotationsLoader(importlib.machinery.SourceFileLoader):
    """Compiles the viewer's modules as Python 3.14 runs them: annotations are not evaluated on import."""

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        return compile(self.get_data(path), path, "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True)


class _ViewerFinder:
    def __init__(self, roots: list[str]):
        self.roots = roots

    def find_spec(self, name, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec and spec.origin and spec.origin.endswith(".py") and spec.origin.startswith(tuple(self.roots)):
            spec.loader = _LazyAnnotationsLoader(name, spec.origin)
            return spec
        return None


def import_viewer(checkout: str) -> types.SimpleNamespace:
    """The viewer's modules this tool runs, imported from the checkout."""
    roots = [os.path.join(os.path.abspath(checkout), part) for part in VIEWER_SOURCES]
    missing = [root for root in roots if not os.path.isdir(root)]
    if missing:
        raise SystemExit(f"error: {checkout} is not a dataset-viewer checkout ({missing[0]} is missing)")
    sys.path[:0] = roots
    sys.meta_path.insert(0, _ViewerFinder(roots))
    sys.dont_write_bytecode = True  # leave the checkout as it was
    sys.modules["libviewer"] = _libviewer_stand_in()
    os.environ.setdefault("TQDM_DISABLE", "1")  # the statistics' per-file bars
    with warnings.catch_warnings():  # the viewer's pins are newer or older than ours in places: import noise only
        warnings.simplefilter("ignore")
        from libapi import duckdb as api_duckdb
        from libcommon import duckdb_utils, parquet_utils
        from libcommon.storage_client import StorageClient
        from libcommon.viewer_utils.parquet_metadata import create_parquet_metadata_file
        from search.routes import filter as search_filter
        from worker.job_runners.config.parquet_and_info import copy_parquet_files
        from worker.job_runners.split import descriptive_statistics, first_rows

    modules = dict(locals())
    return types.SimpleNamespace(**{name: value for name, value in modules.items() if name not in ("checkout", "roots", "missing")})


def _libviewer_stand_in() -> types.ModuleType:
    import pyarrow.parquet as pq

    module = types.ModuleType("libviewer")

    class DatasetError(Exception):
        pass

    class Dataset:
        data_root = ""  # where the `path` of each file is found (the Hub's refs/convert/parquet, here a folder)

        def __init__(self, name, files, revision=None, hf_token=None, hf_endpoint=None, data_store=None, metadata_store=None):
            self.files = files

        async def scan(self, offset=None, limit=None, scan_size_limit=None):
            skip, remaining, batches = offset or 0, limit if limit is not None else float("inf"), []
            for file in self.files:  # libviewer's plan(): the files in order, the rows offset..offset+limit across them
                if remaining <= 0:
                    break
                if skip >= file["num_rows"]:
                    skip -= file["num_rows"]
                    continue
                table = pq.read_table(os.path.join(Dataset.data_root, file["path"]))
                part = table.slice(skip, min(remaining, file["num_rows"] - skip))
                batches += part.to_batches()
                skip, remaining = 0, remaining - part.num_rows
            return batches, []

    module.Dataset, module.DatasetError = Dataset, DatasetError
    return module


def hub_copy(viewer, repo: str, config: str, work: str) -> tuple[dict, dict]:
    """What the Hub's `config-parquet-and-info` and `config-parquet-metadata` steps leave for a Parquet repo:
    split -> the copied files' metadata items, in the viewer's order; and the features."""
    import datasets
    import pyarrow.parquet as pq

    builder = datasets.load_dataset_builder(repo, config)
    repo_prefix = os.path.abspath(repo) + os.sep
    # On the Hub, data_files are hf://datasets/<repo>@<revision>/<path>: the same paths, in the same order.
    hub_builder = types.SimpleNamespace(config=types.SimpleNamespace(name=config, data_files={
        split: [f"hf://datasets/{DATASET}@main/{path[len(repo_prefix):]}" for path in paths]
        for split, paths in builder.config.data_files.items()
    }))  # fmt: skip
    converted, metadata_dir = os.path.join(work, "refs-convert-parquet"), os.path.join(work, "parquet-metadata")
    items: dict = {}
    for operation in viewer.copy_parquet_files(hub_builder):
        source = os.path.join(repo, operation.src_path_in_repo)
        target = os.path.join(converted, operation.path_in_repo)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.link(source, target) if not os.path.exists(target) else None
        _, split, filename = operation.path_in_repo.split("/")
        metadata = pq.read_metadata(target)
        subpath = viewer.create_parquet_metadata_file(
            dataset=DATASET, config=config, split=split, parquet_file_metadata=metadata, filename=filename,
            parquet_metadata_directory=metadata_dir,
        )  # fmt: skip
        items.setdefault(split, []).append({
            "dataset": DATASET, "config": config, "split": split, "filename": filename, "size": os.path.getsize(target),
            "url": f"https://huggingface.co/datasets/{DATASET}/resolve/refs%2Fconvert%2Fparquet/{operation.path_in_repo}",
            "num_rows": metadata.num_rows, "parquet_metadata_subpath": subpath, "source_file": operation.src_path_in_repo,
            "sources": set(pq.read_table(target, columns=["source"]).column("source").to_pylist()),
        })  # fmt: skip
    sys.modules["libviewer"].Dataset.data_root = converted
    return items, builder.info.features.to_dict()


def stand_in_for_services(viewer, items: dict, features: dict, converted: str) -> None:
    """The services the viewer's functions call: the cache of earlier steps, Hub downloads, DuckDB's fts."""

    def previous_step(kind, dataset, config=None, split=None):
        files = [item for split_items in items.values() for item in split_items]
        return {"content": {"parquet_files_metadata": files, "features": features, "partial": False}, "dataset_git_revision": "local"}

    def download(repo_type, revision, repo_id, filename, local_dir=None, hf_token=None, cache_dir=None, force_download=False):
        target = os.path.join(str(local_dir or cache_dir), filename)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(converted, filename), target)
        return target

    class HubApi:
        def __init__(self, *args, **kwargs):
            pass

        def dataset_info(self, repo_id):
            return types.SimpleNamespace(card_data={"language": ["en"]})

    viewer.parquet_utils.get_previous_step_or_raise = previous_step
    viewer.descriptive_statistics.get_previous_step_or_raise = previous_step
    viewer.descriptive_statistics.download_file_from_hub = download
    viewer.api_duckdb.download_file_from_hub = download
    viewer.api_duckdb.HfApi = HubApi
    viewer.api_duckdb.create_index = lambda **kwargs: None  # full-text search needs the fts extension
    viewer.duckdb_utils.LOAD_FTS_COMMAND = "SELECT 1;"


def split_bytes(viewer, split_items: list, metadata_dir: str) -> int:
    """The split's size as the viewer counts it against max_split_size_bytes."""
    return viewer.parquet_utils.get_num_parquet_files_to_process(split_items, metadata_dir, max_size_bytes=float("inf"))[1]


def first_page(viewer, config: str, split: str, metadata_dir: str, work: str, max_bytes: int) -> dict:
    storage = viewer.StorageClient(protocol="file", storage_root=os.path.join(work, "assets"), base_url="http://localhost/assets")
    return viewer.first_rows.compute_first_rows_from_parquet_response(
        dataset=DATASET, revision="local", config=config, split=split, storage_client=storage,
        rows_max_bytes=max_bytes, rows_max_number=viewer.first_rows.MAX_NUM_ROWS_PER_PAGE, hf_token=None,
        hf_endpoint="https://huggingface.co", max_arrow_data_in_memory=ROWS_MAX_ARROW_DATA_IN_MEMORY,
        parquet_metadata_directory=metadata_dir, **FIRST_ROWS,
    )  # fmt: skip


def statistics(viewer, config: str, split: str, metadata_dir: str, work: str, cap: int) -> dict:
    return viewer.descriptive_statistics.compute_descriptive_statistics_response(
        dataset=DATASET, config=config, split=split, local_parquet_directory=os.path.join(work, "statistics", split),
        hf_token=None, parquet_revision=REVISION, max_split_size_bytes=cap, parquet_metadata_directory=metadata_dir,
    )  # fmt: skip


def filter_index(viewer, config: str, split: str, split_items: list, features: dict, metadata_dir: str, work: str, cap: int) -> str:
    """The viewer's DuckDB index of the split (the files up to the byte cap), as its filter reads it."""
    index_dir = os.path.join(work, "duckdb", split)
    viewer.api_duckdb.build_index_file(
        cache_folder=os.path.join(index_dir, "downloads"), index_folder=index_dir, dataset=DATASET, config=config, split=split,
        repo_file_location="index.duckdb", hf_token=None, max_split_size_bytes=cap, extensions_directory=None,
        parquet_metadata_directory=metadata_dir, split_parquet_files=split_items, features=features,
    )  # fmt: skip
    return os.path.join(index_dir, "index.duckdb")


def filtered(viewer, index: str, where: str) -> str:
    """How many indexed rows the viewer's filter finds for `where`, or the error it answers with."""
    try:
        viewer.search_filter.validate_query_parameter(where, "where")
        matching, _ = viewer.search_filter.execute_filter_query(index, ["id"], where, "", 1, 0)
        everything, _ = viewer.search_filter.execute_filter_query(index, ["id"], "", "", 1, 0)
    except Exception as error:  # noqa: BLE001 - the viewer's answer to a bad query is what we report
        return f"{type(error).__name__}: {error}"
    return f"{matching} of {everything} indexed rows"


def check_split(viewer, args, config: str, split: str, items: list, features: dict, metadata_dir: str, work: str) -> list[str]:
    """Print what the viewer shows for one split; return what is wrong."""
    sources, tasks = features["source"]["names"], features["task"]["names"]
    total = split_bytes(viewer, items, metadata_dir)
    cap = int(args.share * total)
    files_read, bytes_read, rows_read = viewer.parquet_utils.get_num_parquet_files_to_process(items, metadata_dir, cap)
    print(f"\n{config}/{split}: {len(items)} files, {sum(item['num_rows'] for item in items)} rows, {total:,d} bytes (uncompressed)")
    print("  files in the viewer's order hold:", " ".join("+".join(sources[code] for code in sorted(item["sources"])) for item in items))

    page = first_page(viewer, config, split, metadata_dir, work, args.first_rows_max_bytes)
    page_sources = [sources[row["row"]["source"]] for row in page["rows"]]
    print(f"  first page: {len(page['rows'])} rows (truncated: {page['truncated']}), sources {dict(Counter(page_sources))}, "
          f"first row {page['rows'][0]['row']['id']}")  # fmt: skip

    stats = statistics(viewer, config, split, metadata_dir, work, cap)
    by_column = {item["column_name"]: item for item in stats["statistics"]}
    print(f"  statistics: cap {cap:,d} bytes ({args.share:.0%}) -> {files_read} of {len(items)} files, {rows_read} rows, "
          f"partial {stats['partial']}; columns {sorted(by_column)}")  # fmt: skip
    for column in ("source", "task"):
        print(f"    {column}: {by_column[column]['column_statistics']['frequencies']}")

    index = filter_index(viewer, config, split, items, features, metadata_dir, work, cap)
    for where in (args.where, '"source"=\'gqa\''):  # the ClassLabel is an integer column in the index
        print(f"  filter {where}: {filtered(viewer, index, where)}")

    problems = []
    counted = {column: {name for name, count in by_column[column]["column_statistics"]["frequencies"].items() if count}
               for column in ("source", "task")}  # fmt: skip  (a ClassLabel's frequencies list every name, 0 included)
    split_sources = {sources[code] for item in items for code in item["sources"]}
    if counted["source"] != split_sources:
        problems.append(f"{split}: the statistics count no row of {sorted(split_sources - counted['source'])}")
    if counted["task"] != set(tasks):
        problems.append(f"{split}: the statistics count no row of the task(s) {sorted(set(tasks) - counted['task'])}")
    if tasks[page["rows"][0]["row"]["task"]] != "vqa":
        problems.append(f"{split}: the first page starts with {page_sources[0]}, not a VQA source")
    return problems


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewer", required=True, help="a checkout of huggingface/dataset-viewer")
    parser.add_argument("--repo", required=True, help="a repository built by scripts/build.py")
    parser.add_argument("--config", default="full")
    parser.add_argument("--share", type=float, default=0.4, help="the statistics' and index's byte cap, as a share of each split")
    parser.add_argument("--first-rows-max-bytes", type=int, default=200_000, help="JSON bytes of the first page (production: 200,000)")
    parser.add_argument("--where", default='"source"=1', help="a filter to run through the viewer's filter code")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)  # the viewer logs every step at INFO
    warnings.filterwarnings("ignore", message="alru_cache detected event loop change")  # one anyio.run per page
    viewer = import_viewer(args.viewer)
    with tempfile.TemporaryDirectory(prefix="viewer-check-") as work:
        items, features = hub_copy(viewer, os.path.abspath(args.repo), args.config, work)
        metadata_dir = os.path.join(work, "parquet-metadata")
        stand_in_for_services(viewer, items, features, os.path.join(work, "refs-convert-parquet"))
        problems = []
        for split, split_items in items.items():
            problems += check_split(viewer, args, args.config, split, split_items, features, metadata_dir, work)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("\nok: every split's statistics count every source and both tasks; every first page starts with a VQA row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
