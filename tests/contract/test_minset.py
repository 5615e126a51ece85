"""MinSet (lazy binary heap) against a plain model: Redis zset order (score, then member)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from queues.zset import MinSet

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
def test_minset_reads_like_a_sorted_set(script: list[tuple[str, object, float]]) -> None:
    fast, model = MinSet(), dict[str, float]()

    def ordered() -> list[tuple[float, str]]:
        return sorted((score, member) for member, score in model.items())

    for op, arg, score in script:
        if op == "add":
            fast.add(str(arg), score)
            model[str(arg)] = score
        elif op == "remove":
            fast.remove(str(arg))
            model.pop(str(arg), None)
        elif op == "xx":
            fast.update_existing(str(arg), score)
            if str(arg) in model:
                model[str(arg)] = score
        elif op == "head":
            assert fast.head(int(str(arg))) == ordered()[: int(str(arg))]
        else:
            within = [member for s, member in ordered() if s <= score]
            assert fast.range_by_score(score, int(str(arg))) == within[: int(str(arg))]
        assert fast.lowest() == min(model.values(), default=float("inf"))
        assert len(fast) == len(model)
    assert list(fast) == [member for _, member in ordered()]
    assert all(fast.score(m) == model[m] for m in model)


def test_stale_entries_are_compacted() -> None:
    z = MinSet()
    for i in range(10_000):
        z.add("a", float(i))  # every add leaves the previous entry stale
    assert len(z) == 1
    assert len(z._heap) <= 2 * len(z) + 65
    assert z.head(1) == [(9_999.0, "a")]
