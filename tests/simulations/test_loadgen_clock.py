"""The load generator's precise sleep: never early, reusable after a cancel, a fallback that
behaves the same, and its descriptor released."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from simulations import loadgen_clock
from simulations.loadgen_clock import Sleeper
from simulations.loadgen_track import clock

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux only")


async def _never_early(sleeper: Sleeper) -> None:
    for delay in (0.0, -0.01, 0.0004, 0.002, 0.0011, 0.005):
        at = clock() + delay
        await sleeper.sleep_until(at)
        assert clock() >= at


@linux
async def test_timerfd_sleeps_until_the_time_never_before() -> None:
    sleeper = Sleeper(asyncio.get_running_loop())
    try:
        assert sleeper.precise
        await _never_early(sleeper)
    finally:
        sleeper.close()
    assert not sleeper.precise


async def test_without_timerfd_it_falls_back_to_asyncio_sleep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loadgen_clock, "_libc", lambda: None)
    sleeper = Sleeper(asyncio.get_running_loop())
    assert not sleeper.precise
    await _never_early(sleeper)
    sleeper.close()


@linux
async def test_a_cancelled_sleep_leaves_the_sleeper_usable() -> None:
    sleeper = Sleeper(asyncio.get_running_loop())
    try:
        task = asyncio.create_task(sleeper.sleep_until(clock() + 0.05))
        await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.06)  # the timer armed for the cancelled sleep fires unheard
        await _never_early(sleeper)
    finally:
        sleeper.close()


@linux
async def test_close_releases_the_descriptor() -> None:
    sleeper = Sleeper(asyncio.get_running_loop())
    fd = sleeper.fd
    sleeper.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
