"""``prefork ctl``: the client side of the control socket (the master side:
prefork/process/control.py). One command per run; the answer goes to stdout.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    """``prefork ctl --control-socket PATH COMMAND...``; returns the exit status (1: the master
    answered with an error or cannot be reached, 2: usage)."""
    from prefork.process import control

    parser = argparse.ArgumentParser(
        prog="prefork ctl",
        description="Talk to a running master: status [--json], metrics, reload, "
        "stop [--quick], pause, resume, drain, undrain, workers N, reopen-logs.",
    )
    parser.add_argument(
        "-s",
        "--control-socket",
        required=True,
        metavar="PATH",
        help="the master's --control-socket",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    args = parser.parse_args(argv)
    if not args.command:
        parser.exit(2, "prefork ctl: error: a command is required\n")
    try:
        answer = control.request(args.control_socket, args.command)
    except OSError as exc:
        print(f"prefork ctl: error: {args.control_socket}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    sys.stdout.write(answer)
    return 1 if answer.startswith("error") else 0
