"""Ids that must be unique within a file: VQA question ids, GQA question ids, COCO image and caption ids.

A duplicate id would silently replace an earlier record (a question text), or count one item twice;
so a file that repeats an id fails in one line naming both records, whatever the image cap.

A set of the id strings would cost about 90 bytes per id (GQA train holds 943k ids) and would keep
alive the ids of every image a capped build drops. Instead each id's hash goes into an array (8 bytes
per id); after the file, records with equal hashes are looked up again in a second read of the
file. That read happens only for a real duplicate or a hash collision (for a GQA-size file, about one
chance in 10^7), and a collision between different ids is not an error.
"""

import io
from array import array
from typing import BinaryIO, Callable, Iterable, Optional

import numpy as np

from ..process.errors import SourceFormatError


class UniqueIds:
    def __init__(self, filename: str, records: str, id_name: str):
        self.filename = filename
        self.records = records  # what the file's records are called in messages: "questions", "images"
        self.id_name = id_name
        self._hashes = array("q")

    def add(self, record_id: str) -> None:
        """Record the id of the next record (records are counted from 0 in file order)."""
        self._hashes.append(hash(record_id))

    def check(self, reread_ids: Callable[[], Iterable[str]]) -> None:
        """Raise if two records share an id; `reread_ids` gives every record's id again, in file order."""
        groups = self._equal_hashes()
        self._hashes = array("q")
        if not groups:
            return
        wanted = {position for group in groups for position in group}
        last = max(wanted)
        ids: dict[int, str] = {}
        try:
            for position, record_id in enumerate(reread_ids()):
                if position in wanted:
                    ids[position] = record_id
                if position >= last:
                    break
        except (OSError, io.UnsupportedOperation):  # a stream that cannot be read twice
            first, second = groups[0][:2]
            raise SourceFormatError(
                self.filename, f"{self.records}[{first}] and {self.records}[{second}] seem to share one {self.id_name}"
            ) from None
        duplicates = [pair for group in groups if (pair := _first_repeat(group, ids))]
        if duplicates:
            first, second = min(duplicates, key=lambda pair: pair[1])
            raise SourceFormatError(
                self.filename, f"{self.id_name} {ids[first]} is used twice, by {self.records}[{first}] and {self.records}[{second}]"
            )

    def _equal_hashes(self) -> list[list[int]]:
        """Positions of the records whose ids hash alike, one ascending list per hash."""
        if len(self._hashes) < 2:
            return []
        hashes = np.frombuffer(self._hashes, dtype=np.int64)
        order = np.argsort(hashes, kind="stable")  # equal hashes stay in file order
        ordered = hashes[order]
        repeats = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
        groups: dict[int, list[int]] = {}
        for index in repeats.tolist():
            group = groups.setdefault(int(ordered[index]), [int(order[index - 1])])
            group.append(int(order[index]))
        return list(groups.values())


def _first_repeat(positions: list[int], ids: dict[int, str]) -> Optional[tuple[int, int]]:
    """(earlier, later) positions of the first id that occurs twice among `positions`, if any."""
    first_seen: dict[str, int] = {}
    for position in positions:
        record_id = ids.get(position)
        if record_id is None:
            continue
        if record_id in first_seen:
            return first_seen[record_id], position
        first_seen[record_id] = position
    return None


def rewound(stream: BinaryIO) -> BinaryIO:
    """The stream back at its start, for the second read (zip members and local files can seek)."""
    stream.seek(0)
    return stream
