"""Writing a command's output file, shared by the planning commands and the load test."""

from __future__ import annotations

import sys
from pathlib import Path


def cannot_write(path: str, exc: OSError, prog: str = "switchboard") -> None:
    """One line on stderr naming the file that failed (``exc``'s own, when it names one)."""
    where = exc.filename if exc.filename is not None else path
    print(f"{prog}: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)


def write_text(path: str, text: str, prog: str = "switchboard") -> bool:
    """Write ``text`` to ``path`` (``-``: stdout), making its directory; False, with the reason
    on stderr, if not."""
    if path == "-":
        sys.stdout.write(text)
        return True
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        cannot_write(path, exc, prog)
        return False
    return True
