"""README.md's "Try it" section, run as written against a live ``switchboard serve``.

The first ``sh`` block starts the server: its ``export`` lines become the server's environment
and ``python3 dev.py serve`` is run as what it executes, ``switchboard serve`` (on a free port
and a fresh data directory). The other ``sh`` blocks run in order in one bash, with the
README's URL pointed at that server; a ``text`` block right after one is its exact output, where
``...`` stands for anything.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.router.conftest import Served

README_URL = "http://127.0.0.1:8080"
MARK = "--- end of block ---"


def section(readme: str, title: str) -> str:
    start = readme.index(f"\n## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block, in order."""
    return [(m[1], m[2]) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.DOTALL)]


def matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def test_try_it_runs_as_written(
    serve_child: Callable[..., Served], repo_root: Path, tmp_path: Path
) -> None:
    """Each command block of "Try it" runs against a live server and prints what is shown."""
    found = blocks(section((repo_root / "README.md").read_text(), "Try it"))
    (lang, start), rest = found[0], found[1:]
    assert lang == "sh"
    *exports, command = start.strip().splitlines()
    assert command == "python3 dev.py serve"
    env: dict[str, str] = {}
    for line in exports:
        found_export = re.fullmatch(r"export (\w+)=(\S+)", line)
        assert found_export, line
        env[found_export[1]] = found_export[2]
    assert set(env) == {"SWITCHBOARD_ADMIN_TOKEN"}
    served = serve_child({**env, "SWITCHBOARD_DATA_DIR": str(tmp_path / "var")})

    scripts: list[str] = []
    expected: list[str | None] = []
    for lang, body in rest:
        if lang == "sh":
            scripts.append(body.replace(README_URL, served.url))
            expected.append(None)
        else:
            assert lang == "text", lang
            assert expected, "an output block before any command"
            assert expected[-1] is None, "two output blocks for one command"
            expected[-1] = body
    assert len(scripts) >= 3
    script = "set -euo pipefail\n" + "".join(f"{s}\necho '{MARK}'\n" for s in scripts)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=repo_root,
        env=clean,
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert done.returncode == 0, done.stderr
    outputs = done.stdout.split(MARK + "\n")
    assert len(outputs) == len(scripts) + 1
    assert outputs[-1] == ""
    for i, (want, got) in enumerate(zip(expected, outputs, strict=False)):
        if want is None:
            continue
        want_lines, got_lines = want.splitlines(), got.splitlines()
        assert len(want_lines) == len(got_lines), (i, got)
        for line, actual in zip(want_lines, got_lines, strict=True):
            assert matches(line, actual), f"block {i}: expected {line!r}, got {actual!r}"
