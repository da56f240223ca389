"""Writing a built split as the Hub's Parquet shards, one family per source, numbered across the
split so that sorted file names interleave the sources: `<split>-NNNNN-of-NNNNN-<source>.parquet`
(arr_coc/publish/layout.py).

One family per source lets a source be streamed on its own (the per-source configs point at these
same files) and lets users weight the sources in a mixture; no shard holds two sources. Shards are
written with datasets' own Parquet writer (`Dataset.to_parquet`, what `push_to_hub` uses): image
bytes embedded, the `huggingface` features metadata, a page index and content-defined chunking for
Xet deduplication. Row groups are small (about ROW_GROUP_BYTES of rows): a streaming reader holds
whole row groups, one per shard it reads from, and a shuffle buffer reads from up to 10 shards at
once in every DataLoader worker (see scripts/bench.py's per-worker figures).
"""

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from ..process.interrupts import release_quietly
from .layout import shard_names

logger = logging.getLogger(__name__)

MAX_SHARD_BYTES = 500 * 1000 * 1000  # "about 500 MB", datasets' own MAX_SHARD_SIZE
MIN_SHARDS = 8
# Rows per row group are chosen to hold about this many bytes (the Arrow size of the rows, images
# included): about 30 rows of 100 kB images. datasets' default is ~100 MB, which a streaming worker
# then holds per shard it reads. Small row groups let the card's `stream` recipe (`reshard()`, one
# shard per row group, then a small buffer) mix rows from many places while holding little: about
# 430 MB per DataLoader worker against about 670 MB with 8 MB row groups (scripts/bench.py).
ROW_GROUP_BYTES = 3 * 1000 * 1000


@dataclass
class SourceShards:
    """What one source's rows of one split became."""

    split: str
    source: str
    num_rows: int
    num_bytes: int  # the rows' Arrow size, what dataset_info's num_bytes means
    paths: list[str] = field(default_factory=list)


def shard_count(num_rows: int, num_bytes: int, max_shard_bytes: int = MAX_SHARD_BYTES) -> int:
    """Contract rule: the smallest power of two >= 8 that keeps every shard under ~500 MB, but never
    more shards than rows (then the largest power of two not above the row count)."""
    count = MIN_SHARDS
    while num_bytes / count > max_shard_bytes:
        count *= 2
    if count > num_rows:
        count = 1
        while count * 2 <= num_rows:
            count *= 2
    return count


def row_group_rows(num_rows: int, num_bytes: int, row_group_bytes: int = ROW_GROUP_BYTES) -> int:
    """Rows per Parquet row group so that a row group holds about `row_group_bytes`."""
    bytes_per_row = num_bytes / num_rows if num_rows else 1
    return max(1, int(row_group_bytes // max(bytes_per_row, 1)))


def write_split(
    dataset: datasets.Dataset,
    split: str,
    out_dir: str,
    num_shards: Optional[int] = None,
    row_group_bytes: int = ROW_GROUP_BYTES,
) -> list[SourceShards]:
    """Write each source's rows of `dataset` as its own contiguous shards (row order kept), in row
    groups of about `row_group_bytes`, named in the split's interleaved order.

    `num_shards` overrides the contract's rule for every source (at most one shard per row: an
    empty Parquet file would be a shard that feeds nothing). A source without rows in this split
    gets no file.
    """
    os.makedirs(out_dir, exist_ok=True)
    base = _without_filter(dataset)
    arrow_files = [cache_file["filename"] for cache_file in base.cache_files]  # the rows' files, not a filter's indices
    families, counts = [], {}
    for source, positions in rows_by_source(dataset).items():
        indices = _table_rows(dataset, positions)
        family = SourceShards(split=split, source=source, num_rows=len(indices), num_bytes=_arrow_bytes(base, indices))
        counts[source] = min(num_shards, family.num_rows) if num_shards else shard_count(family.num_rows, family.num_bytes)
        families.append((family, indices))
    names = shard_names(split, counts)  # every source's count is needed before any file can be named
    for family, indices in families:
        count = counts[family.source]
        group_rows = row_group_rows(family.num_rows, family.num_bytes, row_group_bytes)
        logger.info(
            "%s/%s: %d rows, %.1f MB -> %d shards, row groups of %d rows",
            split, family.source, family.num_rows, family.num_bytes / 1e6, count, group_rows,
        )  # fmt: skip
        with _one_bar(total=family.num_rows, desc=f"Writing {split} {family.source} shards") as bar:
            for index in range(count):
                path = os.path.join(out_dir, names[family.source][index])
                shard = _fresh_view(base, arrow_files).select(indices).shard(count, index, contiguous=True)
                with _writer_released_on_error():
                    shard.to_parquet(path, batch_size=group_rows)  # one batch = one row group
                family.paths.append(path)
                bar.update(len(shard))
    return [family for family, _ in families]


def rows_by_source(dataset: datasets.Dataset) -> dict[str, np.ndarray]:
    """source name -> its row indices in `dataset`, in row order; sources without rows left out.

    The builder emits each source's rows together, so each index array is one contiguous run and
    `select` turns it into a plain slice (no indices mapping, no copy).
    """
    names = dataset.features["source"].names
    codes = np.asarray(dataset.with_format("numpy")["source"][:])
    by_source = {name: np.flatnonzero(codes == code) for code, name in enumerate(names)}
    return {name: indices for name, indices in by_source.items() if len(indices)}


def _without_filter(dataset: datasets.Dataset) -> datasets.Dataset:
    """The dataset's whole Arrow table, without the indices mapping a `filter` or `select` put over it
    (the builder's `near_duplicate_distance` filters its splits)."""
    if dataset._indices is None:
        return dataset
    return datasets.Dataset(dataset.data, info=dataset.info, split=dataset.split)


def _table_rows(dataset: datasets.Dataset, positions: np.ndarray) -> np.ndarray:
    """Row numbers in the dataset's Arrow table of its rows at `positions`."""
    if dataset._indices is None:
        return positions
    return np.asarray(dataset._indices.column(0)).astype(np.int64)[positions]  # uint64 would upset select()


def _arrow_bytes(base: datasets.Dataset, indices: np.ndarray) -> int:
    """The Arrow size of these rows of the table: exact for one contiguous run (a source's rows as the
    builder emits them); with rows filtered out of the run, the run's size in proportion."""
    first, last = int(indices[0]), int(indices[-1])
    run = base.select(range(first, last + 1))  # contiguous: a slice of the table, no copy
    nbytes = contiguous_nbytes(run.data.table)
    return nbytes if len(run) == len(indices) else nbytes * len(indices) // len(run)


def contiguous_nbytes(table: pa.Table) -> int:
    """The table's Arrow size as if every column were one contiguous array.

    `Table.nbytes` counts each chunk's own offsets and validity bitmap, so the same rows built with
    another `num_proc` (other chunk boundaries; a chunk without nulls has no bitmap) measure a few
    bytes apart. This size picks the row-group size and goes into the card's `dataset_info`, so it
    must depend on the rows alone. Binary columns (the images) are measured without being copied.
    """
    return sum(_column_nbytes(list(column.chunks), column.type, len(column)) for column in table.columns)


def _column_nbytes(chunks: list, type_: pa.DataType, length: int) -> int:
    validity = (length + 7) // 8 if any(chunk.null_count for chunk in chunks) else 0
    if pa.types.is_struct(type_):
        children = [chunk.flatten() for chunk in chunks]  # flatten applies each chunk's slice offset
        return validity + sum(
            _column_nbytes([parts[index] for parts in children], type_.field(index).type, length)
            for index in range(type_.num_fields)
        )
    if pa.types.is_binary(type_) or pa.types.is_string(type_) or pa.types.is_large_binary(type_) or pa.types.is_large_string(type_):
        offset_width = 8 if pa.types.is_large_binary(type_) or pa.types.is_large_string(type_) else 4
        data = sum(pc.sum(pc.binary_length(chunk)).as_py() or 0 for chunk in chunks)
        return validity + (length + 1) * offset_width + data
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        offset_width = 8 if pa.types.is_large_list(type_) else 4
        values = [chunk.flatten() for chunk in chunks]  # flatten applies each chunk's slice offset
        return validity + (length + 1) * offset_width + _column_nbytes(values, type_.value_type, sum(map(len, values)))
    if pa.types.is_integer(type_) or pa.types.is_floating(type_):
        # Not the chunks' own nbytes: a slice keeps its chunk's bitmap, with or without a null in it.
        return validity + length * type_.bit_width // 8
    # Anything else (booleans, ...): small next to the images, so concatenating it is cheap.
    return pa.chunked_array(chunks, type=type_).combine_chunks().nbytes


@contextlib.contextmanager
def _writer_released_on_error():
    """datasets closes its ParquetWriter only after the last batch. Interrupted (Ctrl-C) before
    that, the writer lives on in the traceback's frames after datasets has closed its file, and
    closes itself whenever it is collected: onto the closed file, which Python reports as a 13-line
    "Exception ignored in: ParquetWriter.__del__ ... write to closed file" after the build's one-line
    error. So the interrupted frames are released here, quietly; the partial shard is in the staging
    folder, which the failed build discards."""
    try:
        yield
    except BaseException as error:
        release_quietly(error)
        raise


@contextlib.contextmanager
def _one_bar(total: int, desc: str):
    """One bar per source and split instead of datasets' one "Creating parquet" bar per shard.

    datasets' own bars are switched off while it lasts (and on again only if they were on); ours
    follows the same switch, so HF_DATASETS_DISABLE_PROGRESS_BARS silences both.
    """
    enabled = datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()
    try:
        with tqdm(total=total, desc=desc, unit=" rows", disable=not enabled) as bar:
            yield bar
    finally:
        if enabled:
            datasets.utils.logging.enable_progress_bar()


def _fresh_view(dataset: datasets.Dataset, arrow_files: list[str]) -> datasets.Dataset:
    """The same rows over a new memory map, dropped after each shard.

    Pages read through one long-lived map stay in the process's RSS: exporting 1 GB of images
    through it peaked at ~1.3 GB. A map per shard keeps the peak near one shard's worth.
    """
    if not arrow_files:  # an in-memory dataset: nothing is mapped
        return dataset
    return datasets.concatenate_datasets([datasets.Dataset.from_file(path) for path in arrow_files])
