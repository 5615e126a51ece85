#!/usr/bin/env python3
"""Developer entry point: `python3 dev.py serve` runs the server, `python3 dev.py test` runs
every check CI runs. Both create `.venv` and install the project on first use (and again when
pyproject.toml changes), so a fresh machine needs nothing but Python 3.11+."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".switchboard-installed"


def _fingerprint() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_env() -> None:
    """Create the virtualenv and install the project with its dev extras, once per pyproject."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 the user has
        sys.exit(f"Switchboard needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except (subprocess.CalledProcessError, OSError) as exc:
            sys.exit(f"dev.py: could not create .venv ({exc}); install python3-venv and retry")
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    print("dev.py: installing switchboard and its dev dependencies into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(_fingerprint())


def run(*cmd: str) -> int:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=ROOT).returncode


def test(args: list[str]) -> int:
    """Lint, format check, type check, then the whole pytest suite ("no tests ran" is a pass)."""
    for check in (("ruff", "check", "."), ("ruff", "format", "--check", "."), ("mypy", ".")):
        if code := run(*check):
            return code
    code = run("pytest", *args)
    return 0 if code == 5 else code


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"serve", "test", "env"}:
        print(__doc__)
        print("usage: python3 dev.py serve [serve options] | test [pytest options] | env")
        return 2
    ensure_env()
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "test":
        return test(rest)
    if command == "serve":
        os.execv(str(BIN / "switchboard"), [str(BIN / "switchboard"), "serve", *rest])
    return 0


if __name__ == "__main__":
    sys.exit(main())
