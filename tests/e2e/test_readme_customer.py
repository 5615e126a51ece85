"""The README's "Know the customer" example, run as written against a live ``switchboard serve``.

The section's shell block names the admin token; the server is started the way it says (the
real CLI, embedded Redis in a fresh data directory, on a free port), its Python block is saved
and run with this interpreter, and what it prints must be exactly the text block shown.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Know the customer"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the README section, in order."""
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, "the README has no 'Know the customer' section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(section)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"switchboard serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"switchboard serve not ready in 30 s: {log.read_text()[-2000:]}")


@pytest.fixture
def readme() -> tuple[str, str, str]:
    """The admin token of the shell block, the Python example, and its printed output."""
    found = blocks()
    shells = [code for lang, code in found if lang == "sh" and "dev.py serve" in code]
    assert len(shells) == 1, found
    token = re.search(r"export SWITCHBOARD_ADMIN_TOKEN=(\S+)", shells[0])
    assert token is not None, shells[0]
    langs = [lang for lang, _ in found]
    assert langs.count("python") == 1, langs
    at = langs.index("python")
    assert langs[at + 1] == "text", "the Python example must be followed by its output"
    return token.group(1), found[at][1], found[at + 1][1]


@pytest.fixture
def server(tmp_path: Path, readme: tuple[str, str, str]) -> Iterator[str]:
    """``switchboard serve`` on a free port with a fresh data dir; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(
        SWITCHBOARD_ADMIN_TOKEN=readme[0],
        SWITCHBOARD_DATA_DIR=str(tmp_path / "var"),
        SWITCHBOARD_LOG_FORMAT="json",
    )
    script = Path(sys.executable).parent / "switchboard"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "router.cli"]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"serve ignored SIGTERM: {log.read_text()[-2000:]}") from None


def test_readme_customer_example_prints_what_it_shows(
    tmp_path: Path, readme: tuple[str, str, str], server: str
) -> None:
    """The README example routes the at-risk call to retention and the Spanish email to Lucía."""
    token, code, expected = readme
    example = tmp_path / "know_the_customer.py"
    example.write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_ADMIN_TOKEN=token, SWITCHBOARD_URL=server, PYTHONIOENCODING="utf-8")
    run = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=40,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected
