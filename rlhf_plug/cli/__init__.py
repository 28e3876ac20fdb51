"""The ``rlhf-plug`` command line. Imports stay light: ``--help`` never imports torch."""

from __future__ import annotations

import argparse
import sys
import traceback

from rlhf_plug import __version__
from rlhf_plug.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from rlhf_plug.cli import commands

    parser = argparse.ArgumentParser(
        prog="rlhf-plug",
        description="Plugin-based RLHF (SFT, reward model, PPO) on Hugging Face TRL.",
    )
    parser.add_argument("--version", action="version", version=f"rlhf-plug {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    parser.add_argument(
        "-p", "--plugin", action="append", default=[], metavar="MODULE", help="import MODULE as a plugin (repeatable)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in commands.COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        from rlhf_plug.preemption import EXIT_STATUS, Preempted, resume_command
        from rlhf_plug.runner import is_main_process

        if isinstance(exc, Preempted):  # SIGTERM: stopped at a step boundary with a checkpoint
            if is_main_process():
                print(f"{exc}; resume with: {resume_command()}", file=sys.stderr)
            return EXIT_STATUS
        print("interrupted", file=sys.stderr)
        return 130
