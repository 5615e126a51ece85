"""Assembles the Lua scripts: a generated prelude, the lib.lua helpers used, the script's own file.

Redis 6.2 has no function libraries (FUNCTION LOAD is 7.0+), so every EVALSHA runs its whole
script body again, definitions included. Each script is therefore sent with only what it uses,
and with nothing to define that a constant can replace:

* the helpers of ``lib.lua`` it calls, directly or through other helpers (found by name);
* key builders ``K.<name>(parts...)`` become the concatenation itself (``queues.keys.lua_key``),
  after ``local P = KEYS[1]``;
* codes ``E.<NAME>`` become the number of ``queues.errors.Code.<NAME>``.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from queues.errors import Code
from queues.keys import lua_key

SCRIPT_NAMES = (
    "enqueue_contact",
    "accept_reservation",
    "reject_reservation",
    "timeout_offer",
    "abandon_contact",
    "complete_contact",
    "end_wrapup",
    "advance_step",
    "request_callback",
    "release_callback",
    "set_agent_state",
    "agent_offline",
    "upsert_agent",
    "claim_timers",
    "contact_status",
    "agent_status",
    "queue_snapshot",
    "list_agents",
    "agent_offers",
    "list_contacts",
    "read_workflows",
    "read_view",
    "replace_view",
    "resolve_customer",
    "upsert_customer",
    "customer_history",
    "delete_customer",
    "socket_opened",
    "socket_closed",
    "instance_beat",
    "sweep_instance",
    "upgrade_layout",
)

# A top-level definition of lib.lua: "local function name(" or "local name =".
_DEFINITION = re.compile(r"local (?:function )?(\w+)\b")
_KEY = re.compile(r"\bK\.(\w+)\(")
_STRING = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_CODE = re.compile(r"\bE\.(\w+)\b")
_NAME = re.compile(r"[A-Za-z_]\w*")
_COMMENT = re.compile(r"--.*$", re.MULTILINE)


def _read(name: str) -> str:
    return (resources.files("queues") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def _definitions(lib: str) -> dict[str, str]:
    """lib.lua's top-level definitions in order, each with the comment lines just above it."""
    lines = lib.split("\n")
    starts: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        found = _DEFINITION.match(line)
        if found:
            first = i
            while first > 0 and lines[first - 1].startswith("--"):
                first -= 1
            starts.append((first, found.group(1)))
    out: dict[str, str] = {}
    for k, (first, name) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        if name in out:
            raise ValueError(f"lib.lua defines {name} twice")
        out[name] = "\n".join(lines[first:end]).strip()
    return out


def _uses(code: str, among: dict[str, str]) -> set[str]:
    return {n for n in _NAME.findall(_COMMENT.sub("", code)) if n in among}


def _assemble(body: str, lib: dict[str, str]) -> str:
    wanted: set[str] = set()
    todo = _uses(body, lib)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo |= _uses(lib[name], lib) - wanted
    helpers = "\n\n".join(text for name, text in lib.items() if name in wanted)
    code = _CODE.sub(lambda m: str(Code[m.group(1)].value), f"{helpers}\n\n{body}")
    return "local P = KEYS[1]\n" + _inline_keys(code)


def _inline_keys(code: str) -> str:
    """Replace each ``K.<name>(parts...)`` with the key's concatenation."""
    out: list[str] = []
    at = 0
    while (call := _KEY.search(code, at)) is not None:
        out.append(code[at : call.start()])
        parts, at = _arguments(code, call.end())
        out.append(lua_key(call.group(1), [_inline_keys(p) for p in parts]))
    out.append(code[at:])
    return "".join(out)


def _arguments(code: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of a call whose "(" ends at ``start``, and where it ends."""
    parts: list[str] = []
    depth, i, begin = 0, start, start
    while True:
        quoted = _STRING.match(code, i)
        if quoted is not None:
            i = quoted.end()
            continue
        ch = code[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                last = code[begin:i].strip()
                if last or parts:
                    parts.append(last)
                return parts, i + 1
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(code[begin:i].strip())
            begin = i + 1
        i += 1


@cache
def sources() -> dict[str, str]:
    """Each script's full source, as sent to Redis."""
    lib = _definitions(_read("lib"))
    return {name: _assemble(f"-- ---- {name}.lua\n{_read(name)}", lib) for name in SCRIPT_NAMES}
