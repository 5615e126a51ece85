"""Sorted sets with Redis ZSET ordering (score, then member bytes), for the memory store.

``ZSet`` for the waiting lines, whose positions are read; ``MinSet`` for the sets only read at
their lowest end (free agents, queue ages, timers).
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from heapq import heapify, heappop, heappush

from sortedcontainers import SortedList

# Members are ASCII ids (queues.keys.ID_PATTERN), so this sorts after every member.
_MAX_MEMBER = "\U0010ffff"
_NO_SCORE = float("nan")  # never equal to a score
_INF = float("inf")


class ZSet:
    __slots__ = ("_scores", "_sorted")

    def __init__(self) -> None:
        self._scores: dict[str, float] = {}
        self._sorted: SortedList[tuple[float, str]] = SortedList()

    def __len__(self) -> int:
        return len(self._scores)

    def __contains__(self, member: str) -> bool:
        return member in self._scores

    def __iter__(self) -> Iterator[str]:
        return (member for _, member in self._sorted)

    def add(self, member: str, score: float) -> None:
        old = self._scores.get(member)
        if old is not None:
            if old == score:
                return
            self._sorted.remove((old, member))
        self._scores[member] = score
        self._sorted.add((score, member))

    def remove(self, member: str) -> None:
        score = self._scores.pop(member, None)
        if score is not None:
            self._sorted.remove((score, member))

    def score(self, member: str) -> float | None:
        return self._scores.get(member)

    def _head(self) -> tuple[float, str]:
        # SortedList keeps its items in sublists; reading the first directly skips its
        # position lookup (``_sorted[0]``), which costs more than the rest of a head read.
        lists: list[list[tuple[float, str]]] = self._sorted._lists  # type: ignore[attr-defined]
        return lists[0][0]

    def first_not_in(self, excluded: Container[str]) -> tuple[float, str] | None:
        """The first (score, member) whose member is not in ``excluded``."""
        if not self._scores:
            return None
        if not excluded:
            return self._head()
        for entry in self._sorted:
            if entry[1] not in excluded:
                return entry
        return None

    def rank(self, member: str) -> int | None:
        score = self._scores.get(member)
        if score is None:
            return None
        return int(self._sorted.index((score, member)))

    def count_upto(self, score: float) -> int:
        """ZCOUNT -inf score (inclusive)."""
        return int(self._sorted.bisect_right((score, _MAX_MEMBER)))


class MinSet:
    """Members by score, read only from the lowest end: a binary heap with lazy removal.

    Same order as ``ZSet`` (score, then member), for the sets the scripts only read at the
    head (free agents, queue ages, timers). Adding costs one ``heappush``, removing one dict
    deletion: the heap keeps stale entries (a removed member, or an old score) until they
    reach the top, and is rebuilt once it holds more than twice as many entries as members.
    """

    __slots__ = ("_heap", "_scores")

    def __init__(self) -> None:
        self._scores: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._scores)

    def __contains__(self, member: str) -> bool:
        return member in self._scores

    def __iter__(self) -> Iterator[str]:
        return (m for _, m in sorted((s, m) for m, s in self._scores.items()))

    def add(self, member: str, score: float) -> None:
        scores = self._scores
        if scores.get(member, _NO_SCORE) == score:
            return
        scores[member] = score
        heap = self._heap
        heappush(heap, (score, member))
        if len(heap) > 2 * len(scores) + 64:
            self._heap = [(s, m) for m, s in scores.items()]
            heapify(self._heap)

    def update_existing(self, member: str, score: float) -> None:
        """ZADD XX: change the score only if the member is present."""
        if member in self._scores:
            self.add(member, score)

    def remove(self, member: str) -> None:
        self._scores.pop(member, None)

    def score(self, member: str) -> float | None:
        return self._scores.get(member)

    def _clean(self) -> list[tuple[float, str]]:
        heap, scores = self._heap, self._scores
        while heap:
            score, member = heap[0]
            if scores.get(member, _NO_SCORE) == score:
                break
            heappop(heap)
        return heap

    def lowest(self) -> float:
        """The lowest score, or infinity when empty."""
        heap, scores = self._heap, self._scores
        while heap:
            score, member = heap[0]
            if scores.get(member, _NO_SCORE) == score:
                return score
            heappop(heap)
        return _INF

    def head(self, n: int) -> list[tuple[float, str]]:
        """The first ``n`` (score, member) pairs, like ZRANGE 0 n-1 WITHSCORES."""
        heap = self._clean()
        if n == 1 or not heap:
            return heap[:1]
        return self._take(n, None)

    def range_by_score(self, upto: float, limit: int) -> list[str]:
        """ZRANGEBYSCORE -inf upto LIMIT 0 limit."""
        return [m for _, m in self._take(limit, upto)]

    def _take(self, n: int, upto: float | None) -> list[tuple[float, str]]:
        # Pop the first n live entries (dropping stale and duplicate ones), then put them back.
        heap, scores = self._heap, self._scores
        out: list[tuple[float, str]] = []
        seen: set[str] = set()
        while heap and len(out) < n:
            entry = heap[0]
            score, member = entry
            if upto is not None and score > upto:
                break
            heappop(heap)
            if member not in seen and scores.get(member, _NO_SCORE) == score:
                seen.add(member)
                out.append(entry)
        for entry in out:
            heappush(heap, entry)
        return out
