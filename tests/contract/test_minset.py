"""MinSet (lazy binary heap) against ZSet (sorted list): the same answers for every read."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from queues.zset import MinSet, ZSet

members = st.sampled_from([f"m{i}" for i in range(12)])
scores = st.integers(min_value=0, max_value=6).map(float)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), members, scores),
        st.tuples(st.just("remove"), members, st.just(0.0)),
        st.tuples(st.just("xx"), members, scores),
        st.tuples(st.just("head"), st.integers(1, 5), st.just(0.0)),
        st.tuples(st.just("range"), st.integers(1, 5), scores),
    ),
    max_size=400,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_minset_reads_like_zset(script: list[tuple[str, object, float]]) -> None:
    fast, slow = MinSet(), ZSet()
    for op, arg, score in script:
        if op == "add":
            fast.add(str(arg), score)
            slow.add(str(arg), score)
        elif op == "remove":
            fast.remove(str(arg))
            slow.remove(str(arg))
        elif op == "xx":
            fast.update_existing(str(arg), score)
            slow.update_existing(str(arg), score)
        elif op == "head":
            assert fast.head(int(str(arg))) == slow.head(int(str(arg)))
        else:
            assert fast.range_by_score(score, int(str(arg))) == slow.range_by_score(
                score, int(str(arg))
            )
        assert fast.first() == slow.first()
        assert len(fast) == len(slow)
    assert list(fast) == list(slow)
    assert all(fast.score(m) == slow.score(m) for m in slow)


def test_stale_entries_are_compacted() -> None:
    z = MinSet()
    for i in range(10_000):
        z.add("a", float(i))  # every add leaves the previous entry stale
    assert len(z) == 1
    assert len(z._heap) <= 2 * len(z) + 65
    assert z.first() == (9_999.0, "a")
