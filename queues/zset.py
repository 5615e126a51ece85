"""A sorted set with Redis ZSET ordering (score, then member bytes), for the memory store."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from sortedcontainers import SortedList

# Members are ASCII ids (queues.keys.ID_PATTERN), so this sorts after every member.
_MAX_MEMBER = "\U0010ffff"


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

    def update_existing(self, member: str, score: float) -> None:
        """ZADD XX: change the score only if the member is present."""
        if member in self._scores:
            self.add(member, score)

    def remove(self, member: str) -> None:
        score = self._scores.pop(member, None)
        if score is not None:
            self._sorted.remove((score, member))

    def score(self, member: str) -> float | None:
        return self._scores.get(member)

    def head(self, n: int) -> list[tuple[float, str]]:
        """The first ``n`` (score, member) pairs, like ZRANGE 0 n-1 WITHSCORES."""
        return list(islice(self._sorted, n))

    def first(self) -> tuple[float, str] | None:
        return self._sorted[0] if self._scores else None

    def rank(self, member: str) -> int | None:
        score = self._scores.get(member)
        if score is None:
            return None
        return int(self._sorted.index((score, member)))

    def count_upto(self, score: float) -> int:
        """ZCOUNT -inf score (inclusive)."""
        return int(self._sorted.bisect_right((score, _MAX_MEMBER)))

    def range_by_score(self, upto: float, limit: int) -> list[str]:
        """ZRANGEBYSCORE -inf upto LIMIT 0 limit."""
        out: list[str] = []
        for score, member in self._sorted:
            if score > upto or len(out) >= limit:
                break
            out.append(member)
        return out
