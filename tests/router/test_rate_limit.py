"""Rate limits: off by default; when set, each client gets its own bucket and a 429 does nothing."""

from __future__ import annotations

from collections.abc import Awaitable

from config.settings import Settings
from router.ratelimit import Buckets
from tests.router.conftest import ADMIN, GATEWAY, ApiFactory, Reply


def test_buckets_refill_at_the_rate_up_to_the_burst() -> None:
    now = [0.0]
    buckets = Buckets(rate=2.0, burst=3.0, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 0.5  # one token needs half a second at 2/s
    assert buckets.take("b") == 0.0  # another client has its own bucket
    now[0] = 0.5
    assert buckets.take("a") == 0.0
    now[0] = 100.0
    assert [buckets.take("a") for _ in range(4)][-1] > 0  # refilled to the burst, not beyond


async def test_over_the_limit_is_a_429_that_records_nothing(make_api: ApiFactory) -> None:
    api = await make_api(rate_limit_per_second=1, rate_limit_burst=2)

    def post(key: str) -> Awaitable[Reply]:
        body = {"channel": "chat", "intent": "billing"}
        return api.call(
            "POST", "/v1/contacts", body, token=GATEWAY, headers={"Idempotency-Key": key}
        )

    first = await post("k1")
    assert first.status == 201
    await api.call("GET", f"/v1/contacts/{first.body['id']}", token=GATEWAY)
    over = await post("k2")
    assert over.status == 429
    assert over.headers["Content-Type"].startswith("application/problem+json")
    assert int(over.headers["Retry-After"]) >= 1
    assert over.body["status"] == 429
    # the admin is another client, with its own bucket; the refused contact was never created
    queue = await api.call("GET", "/v1/queues/billing", token=ADMIN)
    assert (queue.status, queue.body["waiting"]) == (200, 1)
    assert (await api.call("GET", "/healthz")).status == 200  # probes are never limited


async def test_bad_tokens_share_the_address_bucket(make_api: ApiFactory) -> None:
    """A request whose token does not authenticate counts against the client's address, as
    one with no token does: guessing tokens gets no fresh bucket per guess."""
    api = await make_api(rate_limit_per_second=1, rate_limit_burst=2)
    statuses = [(await api.call("GET", "/v1/queues", token=f"guess-{i}")).status for i in range(4)]
    assert statuses == [401, 401, 429, 429]
    assert (await api.call("GET", "/v1/queues", token=None)).status == 429
    # a valid token is its own client
    assert (await api.call("GET", "/v1/queues", token=GATEWAY)).status == 200


def test_no_limit_by_default() -> None:
    assert Settings(_env_file=None).rate_limit_per_second == 0  # type: ignore[call-arg]
