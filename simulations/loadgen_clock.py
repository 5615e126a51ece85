"""Sleeping until an arrival's time with microsecond precision.

Event loops keep their timers in whole milliseconds (uvloop, libuv) or wait in epoll with a
millisecond timeout rounded up (asyncio), so a send scheduled for 3.4 ms from now goes out up
to a millisecond late. Latencies are measured from the schedule, so that lateness is charged to
the server under test. On Linux a timerfd (a kernel high-resolution timer read through the
loop's reader callbacks) wakes the loop within microseconds instead; elsewhere, or when the
timerfd cannot be made, ``sleep_until`` falls back to ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
from typing import Any

from simulations.loadgen_track import clock

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
    except (OSError, AttributeError):
        return None
    return libc


class Sleeper:
    """``await sleeper.sleep_until(t)``: wake at ``clock()`` time ``t``, precisely when it can.

    One timerfd per sleeper, armed with the delay (relative, so no clock needs to match the
    kernel's) and watched with ``loop.add_reader``. One waiter at a time, as the arrival
    loop sleeps. ``close`` releases the descriptor.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fd = -1
        self.waiter: asyncio.Future[None] | None = None
        self.spec = _Itimerspec()
        libc = _libc()
        if libc is None:
            return
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            return
        try:
            loop.add_reader(fd, self._fired)
        except (NotImplementedError, OSError, ValueError):
            os.close(fd)
            return
        self.fd, self.libc = fd, libc

    @property
    def precise(self) -> bool:
        return self.fd >= 0

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return  # a stale wake-up: the timer was re-armed since
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def sleep_until(self, at: float) -> None:
        delay = at - clock()
        if delay <= 0:
            return
        if self.fd < 0:
            await asyncio.sleep(delay)
            return
        ns = max(int(delay * 1e9), 1)
        value = self.spec.it_value
        value.tv_sec, value.tv_nsec = divmod(ns, 1_000_000_000)
        if self.libc.timerfd_settime(self.fd, 0, ctypes.byref(self.spec), None) != 0:
            await asyncio.sleep(delay)
            return
        waiter = self.waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
