"""Which images a build keeps, and which shard each kept image belongs to.

Contract: per source and split, a capped config keeps, among all images the split's source files
reference (before any skip), those with the smallest `sha1(f"{source}:{image_id}")` hex digests. The
digest also fixes the row order (ascending digest within a shard) and the shard of an image
(digest modulo the number of shards), so the result does not depend on file order or `num_proc`.
"""

import hashlib
import heapq
from typing import Callable, Generic, Iterable, Iterator, Optional, TypeVar

Entry = TypeVar("Entry")


def image_digest(source: str, image_id: str) -> int:
    return int(hashlib.sha1(f"{source}:{image_id}".encode()).hexdigest(), 16)


class ImageSelector(Generic[Entry]):
    """Streams image ids in one pass and keeps the entries of the selected images of some shard parts.

    With a cap, a max-heap holds the `cap` smallest digests seen so far. The threshold only ever
    falls, so an image rejected or evicted once can never come back: memory stays bounded by the
    cap however large the source files are.
    """

    def __init__(
        self, source: str, cap: Optional[int], part: "int | Iterable[int]", num_parts: int, new_entry: Callable[[str], Entry]
    ):
        self.source = source
        self.cap = cap
        # One part, or several: a build that runs several parts of a source in one process reads the
        # source's files once for all of them.
        self.parts = frozenset([part] if isinstance(part, int) else part)
        self.num_parts = num_parts
        self._new_entry = new_entry
        self._heap: list[tuple[int, str]] = []  # (-digest, image_id) of every selected image, all parts
        self._selected: set[str] = set()
        self._entries: dict[str, Entry] = {}  # selected images of these parts
        self._digests: dict[str, int] = {}

    def offer(self, image_id: str) -> Optional[Entry]:
        """Entry to fill for this image, or None when the image is not (or no longer) kept here."""
        if image_id in self._selected:
            return self._entries.get(image_id)
        digest = image_digest(self.source, image_id)
        if self.cap is not None:
            if self.cap == 0:
                return None
            if len(self._heap) >= self.cap:
                if digest >= -self._heap[0][0]:
                    return None
                _, evicted = heapq.heapreplace(self._heap, (-digest, image_id))
                self._forget(evicted)
            else:
                heapq.heappush(self._heap, (-digest, image_id))
        self._selected.add(image_id)
        if digest % self.num_parts not in self.parts:
            return None
        self._digests[image_id] = digest
        entry = self._entries[image_id] = self._new_entry(image_id)
        return entry

    def get(self, image_id: str) -> Optional[Entry]:
        """Entry of a kept image, without offering the image for selection."""
        return self._entries.get(image_id)

    def entries(self, part: Optional[int] = None) -> list[Entry]:
        """Kept entries (of one part, or of all) in ascending digest order: the row order of a part."""
        image_ids = self._entries if part is None else [i for i in self._entries if self._digests[i] % self.num_parts == part]
        return [self._entries[image_id] for image_id in sorted(image_ids, key=self._digests.__getitem__)]

    def take(self, part: int) -> Iterator[Entry]:
        """Kept entries of one part in ascending digest order, each forgotten as it is handed out.

        For the rows, once every record has been offered: a part's memory goes as its rows go out.
        """
        image_ids = sorted((i for i in self._entries if self._digests[i] % self.num_parts == part), key=self._digests.__getitem__)
        for image_id in image_ids:
            del self._digests[image_id]
            yield self._entries.pop(image_id)

    def _forget(self, image_id: str) -> None:
        self._selected.discard(image_id)
        self._entries.pop(image_id, None)
        self._digests.pop(image_id, None)
