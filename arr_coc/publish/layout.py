"""Where a built split's shards go and in which order they sort (DESIGN.md, "Shard order").

A split's files are one sequence `<split>-NNNNN-of-NNNNN-<source>.parquet`. File j (0-based) of a
source with n files gets the key ((j + 0.5) / n, the source's index in the `source` ClassLabel), and
the split's files sorted by key are numbered 0, 1, ... So `sorted(files)`, which is the order
`load_dataset` and the Hub viewer read them in, interleaves the sources in proportion to their file
counts: the viewer's first page, its statistics and its search, which read the first few GB of a
split, see every source, and the glob `<split>-*-<source>.parquet` still selects one source.
"""

import re
from fractions import Fraction

from ..schema import SOURCES

# The names before the interleaved order (`<split>-<source>-NNNNN-of-NNNNN.parquet`, every source's
# files numbered on their own): a build or push over a repository that still has them replaces them.
OLD_SHARD_NAME = re.compile(r"^(?P<split>[^-/]+)-(?P<source>[a-z0-9]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
SHARD_NAME = re.compile(r"^(?P<split>[^-/]+)-(?P<index>\d{5})-of-(?P<count>\d{5})-(?P<source>[a-z0-9]+)\.parquet$")


def shard_file_name(split: str, index: int, count: int, source: str) -> str:
    return f"{split}-{index:05d}-of-{count:05d}-{source}.parquet"


def source_pattern(config: str, split: str, source: str) -> str:
    """The `data_files` glob of one source's files of a split."""
    return f"data/{config}/{split}-*-{source}.parquet"


def shard_order(counts: dict[str, int]) -> list[tuple[str, int]]:
    """(source, j) of every file of one split, in file-name order; `counts` is source -> its file count.

    The keys are exact fractions: (2j + 1) / 2n of two sources are equal only when their counts are,
    and then the source order decides, so no float rounding can reorder two files."""
    keys = [
        (Fraction(2 * j + 1, 2 * count), SOURCES.index(source), source, j)
        for source, count in counts.items()
        for j in range(count)
    ]
    return [(source, j) for _, _, source, j in sorted(keys)]


def shard_names(split: str, counts: dict[str, int]) -> dict[str, list[str]]:
    """source -> the file names of its shards 0, 1, ... of the split, numbered across all sources."""
    order = shard_order(counts)
    names = {source: [""] * count for source, count in counts.items()}
    for index, (source, j) in enumerate(order):
        names[source][j] = shard_file_name(split, index, len(order), source)
    return names
