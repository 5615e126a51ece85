"""The ``switchboard`` command: serve, simulate, staff, loadtest (api-v1 §1 and §7).

Each subcommand's implementation is imported only when it runs, so ``switchboard staff`` does
not pay for aiohttp and the server does not pay for the simulator.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="Omnichannel contact routing server and planning tools."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the routing server")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080)")
    serve.add_argument("--config", default=None, help="routing config YAML (default: the demo)")

    simulate = sub.add_parser("simulate", help="run a scenario in virtual time")
    simulate.add_argument("scenario", help="scenario YAML")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--replications", type=int, default=1)
    simulate.add_argument("--json", dest="json_out", default=None, help="write results JSON here")
    simulate.add_argument("--report", default=None, help="write an HTML report into this dir")
    simulate.add_argument("--no-progress", action="store_true", help="no progress bar")

    staff = sub.add_parser("staff", help="Erlang C/A staffing table, or search a scenario")
    staff.add_argument("--per-hour", type=float, help="arrivals per hour")
    staff.add_argument("--aht", type=float, help="average handle time (s)")
    staff.add_argument("--threshold", type=float, default=20.0, help="service-level threshold (s)")
    staff.add_argument("--target", type=float, default=0.8, help="service-level target (0..1)")
    staff.add_argument("--patience", type=float, default=None, help="mean patience (s): Erlang A")
    staff.add_argument("--scenario", default=None, help="search agent counts by simulation")
    staff.add_argument("--seed", type=int, default=1)
    staff.add_argument("--replications", type=int, default=None, help="per candidate staffing")
    staff.add_argument("--no-progress", action="store_true", help="no progress bar")
    staff.add_argument("--json", dest="json_out", default=None, help="write results JSON here")

    load = sub.add_parser("loadtest", help="drive a running server with Poisson arrivals")
    load.add_argument("--url", required=True, help="server base URL")
    load.add_argument("--token", required=True, help="admin token")
    load.add_argument("--rate", type=float, default=50.0, help="contacts per second")
    load.add_argument("--agents", type=int, default=50)
    load.add_argument("--duration", type=float, default=30.0, help="seconds")
    load.add_argument("--json", dest="json_out", default=None)
    load.add_argument("--ws-url", default=None, help="agents' sockets here (default: --url)")
    load.add_argument("--seed", type=int, default=1)
    load.add_argument("--mix", default=None, help='e.g. "channel:voice=0.6,chat=0.4;language:en=1"')
    load.add_argument("--customers", type=int, default=1000, help="customer pool size")
    load.add_argument("--accept-delay", default=None, help="LOW:HIGH seconds (default 0.01:0.05)")
    load.add_argument("--handle-time", default=None, help="LOW:HIGH seconds (default 0.2:1.0)")
    load.add_argument("--sockets", type=int, default=None, help="agents on sockets (default all)")
    load.add_argument("--no-progress", action="store_true", help="no live progress line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
