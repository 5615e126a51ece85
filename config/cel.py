"""CEL expressions: compile once, check the variables they use, evaluate with a safe default.

Expressions run over ``contact``, ``customer``, ``agent`` and ``now``, depending on where they
appear (``ROOTS``). A runtime error (a missing map key, a type mismatch) makes a condition false
and a priority 0: routing must go on, and the error is counted and logged by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cel

#: Which variables an expression may use, by where it appears in the routing config.
ROOTS: dict[str, frozenset[str]] = {
    "segment": frozenset({"contact", "customer", "now"}),
    "queue": frozenset({"agent"}),
    "rule": frozenset({"contact", "customer", "now"}),
    "suggestion": frozenset({"contact", "customer", "now"}),
}

#: The functions and methods the CEL runtime (``common-expression-language``) evaluates, besides
#: operators and macros (has, all, exists, exists_one, map, filter). Anything else compiles but
#: fails at every evaluation, so the config check rejects it (tests/config pins this list).
FUNCTIONS = frozenset(
    {
        "size", "int", "uint", "double", "string", "bytes", "type", "dyn", "timestamp",
        "duration", "matches", "contains", "startsWith", "endsWith", "getFullYear", "getMonth",
        "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek", "getHours", "getMinutes",
        "getSeconds", "getMilliseconds",
    }
)  # fmt: skip
#: The time accessors the runtime has only without an argument: a time-zone form
#: (``now.getHours('Europe/Paris')``) compiles and then fails at every evaluation.
_TIME_ACCESSORS = (
    "getFullYear|getMonth|getDayOfYear|getDayOfMonth|getDate|getDayOfWeek|getHours|getMinutes|"
    "getSeconds|getMilliseconds"
)
_TIME_ZONE_FORM = re.compile(rf"\.\s*({_TIME_ACCESSORS})\s*\(\s*[^)\s]")
_OPERATOR = re.compile(r"^[_@!-]")
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_PARSE_ERROR = re.compile(r"<input>:(\d+):(\d+): (?:Syntax error: )?([^\n]*)")
_BINDERS = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


class CelError(ValueError):
    """An expression that does not compile or uses a variable it may not."""


@dataclass(frozen=True, slots=True)
class Expr:
    source: str
    program: cel.Program

    def run(self, context: cel.Context) -> Any:
        return self.program.execute(context)

    def evaluate(self, context: cel.Context) -> tuple[Any, bool]:
        """(value, failed): a runtime error is not raised but reported, the value then None."""
        try:
            return self.program.execute(context), False
        except Exception:  # the CEL runtime raises KeyError/TypeError/RuntimeError/...
            return None, True

    def test(self, context: cel.Context) -> tuple[bool, bool]:
        """Evaluate as a condition: (result, failed). Errors and non-true results are False."""
        value, failed = self.evaluate(context)
        return value is True, failed


@lru_cache(maxsize=4096)
def _compile(source: str) -> cel.Program:
    return cel.compile(source)


def compile_expr(source: str, where: str) -> Expr:
    """Compile ``source`` for a config location kind (a key of ``ROOTS``)."""
    if not source.strip():
        raise CelError("empty expression")
    try:
        program = _compile(source)
    except ValueError as exc:
        # The parser reports "... ERROR: <input>:LINE:COL: Syntax error: WHAT" and then echoes
        # the source with a caret; keep only the first WHAT and where it is.
        found = _PARSE_ERROR.search(str(exc))
        if found is None:
            raise CelError(f"CEL syntax error: {str(exc).splitlines()[0]}") from None
        line, col, what = found.groups()
        where_in = f"column {col}" if line == "1" else f"line {line}, column {col}"
        raise CelError(f"CEL syntax error at {where_in}: {what.strip()}") from None
    bound = set(_BINDERS.findall(source))
    allowed = ROOTS[where]
    unknown = sorted(set(program.variables()) - allowed - bound)
    if unknown:
        names = ", ".join(sorted(allowed))
        raise CelError(f"unknown variable {', '.join(unknown)} (available here: {names})")
    missing = sorted(
        f for f in program.functions() if f not in FUNCTIONS and not _OPERATOR.match(f)
    )
    if missing:
        raise CelError(f"unknown function {', '.join(missing)}")
    zoned = _TIME_ZONE_FORM.search(_STRING_LITERAL.sub("''", source))
    if zoned:
        name = zoned.group(1)
        raise CelError(
            f"{name}() takes no time zone here: the runtime has only {name}() in UTC "
            f"(a time-zone argument would fail at every evaluation)"
        )
    return Expr(source, program)


class Projection:
    """The top-level fields of each variable the expressions read.

    Converting a Python value into a CEL context costs about a microsecond per field, more than
    evaluating a typical expression, so contexts carry only the fields some expression reads.
    ``None`` means the whole variable is used.
    """

    def __init__(self, sources: Iterable[str], roots: Iterable[str]) -> None:
        self.fields: dict[str, frozenset[str] | None] = {}
        text = "\n".join(sources)
        for root in roots:
            refs = re.findall(rf"\b{root}\b(\s*\.\s*[A-Za-z_]\w*)?", text)
            if not refs:
                self.fields[root] = frozenset()
            elif any(r == "" for r in refs):
                self.fields[root] = None
            else:
                self.fields[root] = frozenset(r.split(".")[-1].strip() for r in refs)

    def uses(self, root: str) -> bool:
        return self.fields.get(root) != frozenset()

    def project(self, root: str, value: dict[str, Any]) -> dict[str, Any]:
        wanted = self.fields.get(root)
        if wanted is None:
            return value
        # (a field the value lacks stays absent: has() is false for it, as on the whole value)
        return {k: value[k] for k in wanted if k in value}
