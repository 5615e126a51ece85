"""The memory store's sorted sets against plain models: Redis zset order (score, then member).

MinSet and FreeSet (lazy binary heaps), and ZSet's cached head.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from queues.zset import FreeSet, MinSet, Ticket, ZSet

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


zset_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), members, scores),
        st.tuples(st.just("remove"), members, st.just(0.0)),
        st.tuples(st.just("first"), st.frozensets(members, max_size=4), st.just(0.0)),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(zset_ops)
def test_zset_keeps_its_head(script: list[tuple[str, object, float]]) -> None:
    z, model = ZSet("q1"), dict[str, float]()
    for op, arg, score in script:
        if op == "add":
            z.add(str(arg), score)
            model[str(arg)] = score
        elif op == "remove":
            z.remove(str(arg))
            model.pop(str(arg), None)
        else:
            assert isinstance(arg, frozenset)
            rest = sorted((s, m) for m, s in model.items() if m not in arg)
            assert z.first_not_in(arg) == (rest[0] if rest else None)
        ordered = sorted((s, m) for m, s in model.items())
        assert z.first == (ordered[0] if ordered else None)
        assert list(z) == [m for _, m in ordered]
        assert all(z.rank(m) == i for i, (_, m) in enumerate(ordered))
    assert z.label == "q1"


free_ops = st.lists(
    st.one_of(
        st.tuples(st.just("list"), members, scores, scores),
        st.tuples(st.just("withdraw"), members, st.just(0.0), st.just(0.0)),
        st.tuples(st.just("head"), st.integers(1, 5), st.sampled_from([0.0, 1.0]), st.just(0.0)),
    ),
    max_size=400,
)


@settings(max_examples=300, deadline=None)
@given(free_ops)
def test_freeset_withdraws_a_listing_from_every_set(
    script: list[tuple[str, object, float, float]],
) -> None:
    """Two sets share each member's tickets, as an agent's queues do."""
    sets, models = (FreeSet(), FreeSet()), (dict[str, float](), dict[str, float]())
    tickets: dict[str, Ticket] = {}
    for op, arg, a, b in script:
        member = str(arg)
        if op == "list":
            old = tickets.pop(member, None)
            if old is not None:
                old.clear()
            ticket = tickets[member] = [(int(a), int(b))]
            for fs, model, score in zip(sets, models, (a, b), strict=True):
                fs.add(member, score, ticket)
                model[member] = score
        elif op == "withdraw":
            old = tickets.pop(member, None)
            if old is not None:
                old.clear()
            for model in models:
                model.pop(member, None)
        else:
            fs, model = sets[int(a)], models[int(a)]
            n = int(str(arg))
            assert fs.head(n) == sorted((s, m) for m, s in model.items())[:n]
        for fs, model in zip(sets, models, strict=True):
            assert list(fs) == [m for _, m in sorted((s, m) for m, s in model.items())]
            assert len(fs) == len(model)
            assert all(m in fs and fs.score(m) == s for m, s in model.items())


def test_dead_listings_are_compacted() -> None:
    fs = FreeSet()
    for i in range(10_000):
        ticket: Ticket = [(i, 0)]
        fs.add("a", float(i), ticket)
        if i < 9_999:
            ticket.clear()
    assert len(fs._heap) <= 2 * len(fs) + 65
    assert fs.head(1) == [(9_999.0, "a")]
