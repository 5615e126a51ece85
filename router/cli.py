"""The ``switchboard`` command: serve, simulate, staff, loadtest (api-v1 §1 and §7).

Each subcommand's implementation is imported only when it runs, so ``switchboard staff`` does
not pay for aiohttp and the server does not pay for the simulator.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, ``switchboard: ...``, and exit 2, in the style of the
    subcommands' own errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"switchboard: {message}\n")


# Argument types: each rejects what the commands cannot use, so a bad value stops the command
# before it loads or runs anything. argparse names the option: "argument --seed: ...".


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def _seed(text: str) -> int:
    """Any integer >= 0: numpy's ``SeedSequence`` takes no negative seed and no largest one."""
    return _whole(text, 0)


def _count(text: str) -> int:
    return _whole(text, 1)


def _replications(text: str) -> int:
    """1..1000, as a scenario's ``replications``."""
    value = _whole(text, 1)
    if value > 1000:
        raise argparse.ArgumentTypeError(f"must be at most 1000, got {value}")
    return value


def _whole_or_zero(text: str) -> int:
    return _whole(text, 0)


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _finite(text)
    if not 0 < value < 1:
        # (1 is never met: with any load some contact waits past any threshold)
        raise argparse.ArgumentTypeError(f"must be above 0 and below 1, got {text!r}")
    return value


def _share(text: str) -> float:
    value = _finite(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, got {text!r}")
    return value


def _cannot_create_in(directory: Path) -> str | None:
    """Why files cannot be made in ``directory`` (created first when missing), or None."""
    existing = directory
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def _output_file(text: str) -> str:
    """A file to write (``-``: stdout); its directory is made if missing."""
    if text == "-":
        return text
    path = Path(text)
    if path.is_dir():
        problem: str | None = f"{path} is a directory"
    elif os.path.lexists(path) and not os.access(path, os.W_OK):
        problem = f"{path} is not writable"
    else:
        problem = _cannot_create_in(path.parent)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {problem}")
    return text


def _output_dir(text: str) -> str:
    """A directory to write into; made if missing."""
    problem = _cannot_create_in(Path(text))
    if problem is not None:
        raise argparse.ArgumentTypeError(f"cannot write into {text}: {problem}")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="switchboard", description="Omnichannel contact routing server and planning tools."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the routing server")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080)")
    serve.add_argument("--config", default=None, help="routing config YAML (default: the demo)")

    simulate = sub.add_parser("simulate", help="run a scenario in virtual time")
    simulate.add_argument("scenario", help="scenario YAML")
    simulate.add_argument("--seed", type=_seed, default=1)
    simulate.add_argument(
        "--replications", type=_replications, default=None, help="default: the scenario's (1)"
    )
    simulate.add_argument(
        "--json", dest="json_out", type=_output_file, default=None, help="write results JSON here"
    )
    simulate.add_argument(
        "--report", type=_output_dir, default=None, help="write an HTML report into this dir"
    )
    simulate.add_argument("--no-progress", action="store_true", help="no progress bar")

    staff = sub.add_parser("staff", help="Erlang C/A staffing table, or search a scenario")
    staff.add_argument("--per-hour", type=_non_negative, help="arrivals per hour")
    staff.add_argument("--aht", type=_positive, help="average handle time (s)")
    staff.add_argument("--threshold", type=_non_negative, help="service-level threshold (s; 20)")
    staff.add_argument("--target", type=_fraction, help="service-level target (0..1; 0.8)")
    staff.add_argument("--patience", type=_positive, help="mean patience (s): Erlang A")
    staff.add_argument("--scenario", default=None, help="search agent counts by simulation")
    staff.add_argument("--seed", type=_seed, default=1)
    staff.add_argument(
        "--replications", type=_replications, default=None, help="per candidate staffing"
    )
    staff.add_argument("--no-progress", action="store_true", help="no progress bar")
    staff.add_argument(
        "--json", dest="json_out", type=_output_file, default=None, help="write results JSON here"
    )

    load = sub.add_parser("loadtest", help="drive a running server with Poisson arrivals")
    load.add_argument("--url", required=True, help="server base URL")
    load.add_argument("--token", required=True, help="admin token")
    load.add_argument("--rate", type=_non_negative, default=50.0, help="contacts per second")
    load.add_argument("--agents", type=_whole_or_zero, default=50)
    load.add_argument("--duration", type=_positive, default=30.0, help="seconds")
    load.add_argument("--json", dest="json_out", type=_output_file, default=None)
    load.add_argument("--ws-url", default=None, help="agents' sockets here (default: --url)")
    load.add_argument("--seed", type=_seed, default=1)
    load.add_argument("--mix", default=None, help='e.g. "channel:voice=0.6,chat=0.4;language:en=1"')
    load.add_argument("--customers", type=_count, default=1000, help="customer pool size")
    load.add_argument("--accept-delay", default=None, help="LOW:HIGH seconds (default 0.01:0.05)")
    load.add_argument("--handle-time", default=None, help="LOW:HIGH seconds (default 0.2:1.0)")
    load.add_argument(
        "--sockets", type=_whole_or_zero, default=None, help="agents on sockets (default all)"
    )
    load.add_argument("--no-progress", action="store_true", help="no live progress line")
    load.add_argument(
        "--drain", type=_non_negative, default=None, help="seconds to wait for the last offers (10)"
    )
    load.add_argument(
        "--max-unrouted",
        type=_share,
        default=None,
        help="share of contacts that may end never offered before the run fails (0.01)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C: stop quietly, as a shell expects (128 + SIGINT)
        print("switchboard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of stdout left early (`switchboard staff ... | head`): stop quietly, as a
        # process ended by SIGPIPE would (128 + 13); what is still buffered goes to /dev/null
        # rather than fail again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from router.serve import serve

        return int(serve(args))
    if args.command == "simulate":
        from simulations.commands import simulate

        return int(simulate(args))
    if args.command == "staff":
        from simulations.commands import staff

        return int(staff(args))
    from simulations.loadtest import loadtest

    return int(loadtest(args))


if __name__ == "__main__":
    sys.exit(main())
