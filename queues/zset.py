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
    """A sorted set whose positions are read (the waiting lines).

    ``first`` holds the lowest (score, member), or None: the routing decisions read the head of
    several lines and then take it, so the head is kept where one object read finds it, and
    taking it skips the search of the sorted list.
    """

    __slots__ = ("_scores", "_sorted", "first", "label")

    def __init__(self, label: str = "") -> None:
        self._scores: dict[str, float] = {}
        self._sorted: SortedList[tuple[float, str]] = SortedList()
        self.first: tuple[float, str] | None = None
        self.label = label  # the owner's name for the set (the memory store: its queue)

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
            self.remove(member)
        self._scores[member] = score
        entry = (score, member)
        self._sorted.add(entry)
        first = self.first
        if first is None or entry < first:
            self.first = entry

    def remove(self, member: str) -> None:
        score = self._scores.pop(member, None)
        if score is None:
            return
        first = self.first
        if first is not None and first[1] == member:
            # The head is at (sublist 0, index 0): delete it there, without a search.
            ordered = self._sorted
            ordered._delete(0, 0)  # type: ignore[attr-defined]
            lists: list[list[tuple[float, str]]] = ordered._lists  # type: ignore[attr-defined]
            self.first = lists[0][0] if lists else None
        else:
            self._sorted.remove((score, member))

    def score(self, member: str) -> float | None:
        return self._scores.get(member)

    def first_not_in(self, excluded: Container[str]) -> tuple[float, str] | None:
        """The first (score, member) whose member is not in ``excluded``."""
        if not excluded:
            return self.first
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


#: One listing of a member in free sets: ``[key]`` while it stands, emptied to withdraw it.
Ticket = list[tuple[int, int]]


class FreeSet:
    """Free agents by score, read only from the lowest end; withdrawn from every set at once.

    An agent is listed in the free sets of all its queues together and withdrawn from all of
    them together (it becomes busy or unavailable). Each listing is a ``Ticket`` shared by its
    entries ``(score, member, ticket)`` in those sets: emptying the ticket withdraws the member
    from all of them in one write, and the heaps drop the dead entries when they reach the top
    (lazy removal, as in ``MinSet``). A member has at most one live entry per set. Order as in
    ``ZSet``: score, then member. Reading the members (``len``, ``in``, iteration, ``score``)
    scans the heap: only checks and tests do.
    """

    __slots__ = ("_heap", "_limit")

    def __init__(self) -> None:
        self._heap: list[tuple[float, str, Ticket]] = []
        self._limit = 64  # compact the heap when it grows past this many entries

    def add(self, member: str, score: float, ticket: Ticket) -> None:
        """List ``member`` with ``score`` for as long as ``ticket`` stands (not emptied)."""
        heap = self._heap
        heappush(heap, (score, member, ticket))
        if len(heap) > self._limit:
            heap = self._heap = [entry for entry in heap if entry[2]]
            heapify(heap)
            self._limit = 2 * len(heap) + 64

    def _live(self) -> list[tuple[float, str]]:
        return sorted((score, member) for score, member, ticket in self._heap if ticket)

    def __len__(self) -> int:
        return len(self._live())

    def __contains__(self, member: str) -> bool:
        return any(m == member for _, m in self._live())

    def __iter__(self) -> Iterator[str]:
        return (m for _, m in self._live())

    def score(self, member: str) -> float | None:
        return next((s for s, m in self._live() if m == member), None)

    def head(self, n: int) -> list[tuple[float, str]]:
        """The first ``n`` (score, member) pairs, like ZRANGE 0 n-1 WITHSCORES."""
        heap = self._heap
        while heap and not heap[0][2]:
            heappop(heap)
        if not heap:
            return []
        if n == 1:
            score, member, _ = heap[0]
            return [(score, member)]
        taken: list[tuple[float, str, Ticket]] = []
        while heap and len(taken) < n:
            entry = heappop(heap)
            if entry[2]:
                taken.append(entry)
        for entry in taken:
            heappush(heap, entry)
        return [(score, member) for score, member, _ in taken]
