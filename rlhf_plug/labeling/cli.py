"""The options ``rlhf-plug label`` gets for the web page (``--web`` ...) and its ``stats`` sub-command.

``rlhf-plug label [options]`` labels as before; ``rlhf-plug label stats FILE``
reads a rankings file instead. ``--model``, ``--prompts`` and ``--out`` are
checked by the labelling session (not by argparse), so that ``stats`` needs none of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_web_arguments(p: argparse.ArgumentParser) -> None:
    from rlhf_plug.labeling.web.serve import DEFAULT_CRITERIA, WebOptions

    web = p.add_argument_group("web page (--web)")
    web.add_argument("--web", action="store_true", help="serve a labelling page for one person or a team instead of the terminal")
    web.add_argument("--host", default=WebOptions.host, help="address to listen on (default %(default)s: this machine only)")
    web.add_argument("--port", type=int, default=WebOptions.port, help="default %(default)s (0: any free port)")
    web.add_argument("--allowed-hosts", default="", metavar="HOSTS",
                     help="comma-separated host names the page answers to besides the one it prints, e.g. a proxy's "
                     "(requests naming any other host get 400); '*' answers to any")
    web.add_argument("--annotators", metavar="NAMES", help="comma-separated names, one private link each (default: your user name)")
    web.add_argument("--overlap", type=int, default=None, help="annotators who see each prompt (default 1)")
    web.add_argument("--criteria", default=",".join(DEFAULT_CRITERIA),
                     help="criteria rated 1-7 per answer, comma-separated; '' for none (default %(default)s)")
    p.add_argument("--candidates", type=Path, metavar="FILE",
                   help="rank answers you already have: JSONL rows {prompt, completions: [K answers]}; replaces --model/--prompts")


def add_stats(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="label_command", metavar="stats", title="reports")
    stats = sub.add_parser("stats", help="agreement between annotators (and with a judge) and rating averages of a rankings file",
                           description="Pairwise agreement between annotators on the prompts they share, agreement "
                           "with a reward function (--judge), and the rating averages per criterion.")
    stats.add_argument("file", type=Path, metavar="FILE", help="a rankings JSONL written by rlhf-plug label")
    stats.add_argument("--judge", metavar="REWARD_FUNCTION", help="also compare each annotator with this reward function")
    stats.add_argument("--judge-with", action="append", default=[], metavar="KEY=VALUE",
                       help="an option of the judge, e.g. criterion=helpful (repeatable)")
    stats.set_defaults(handler=cmd_stats)


def cmd_web(args, options, registries, console) -> int:
    from rlhf_plug.labeling.web import require_web_extra

    require_web_extra()
    from rlhf_plug.labeling.web.serve import run_web

    return run_web(options, web_options(args), registries, console)


def web_options(args):
    from rlhf_plug.labeling.web.forms import parse_criteria
    from rlhf_plug.labeling.web.serve import WebOptions
    from rlhf_plug.labeling.web.team import parse_names

    names = parse_names(args.annotators) if args.annotators is not None else [_user_name()]
    overlap = 1 if args.overlap is None else args.overlap
    hosts = [h.strip().lower() for h in args.allowed_hosts.split(",") if h.strip()]
    return WebOptions(names, overlap, parse_criteria(args.criteria), args.host, args.port, hosts)


def check_terminal_args(args) -> None:
    """Web-only options given without ``--web`` are an error, not silently ignored."""
    from rlhf_plug.errors import UserError
    from rlhf_plug.labeling.web.serve import DEFAULT_CRITERIA, WebOptions

    defaults = {"host": WebOptions.host, "port": WebOptions.port, "annotators": None, "overlap": None,
                "criteria": ",".join(DEFAULT_CRITERIA), "allowed_hosts": ""}
    for name, default in defaults.items():
        if getattr(args, name) != default:
            raise UserError(f"--{name.replace('_', '-')} is an option of the web page: add --web")


def _user_name() -> str:
    """The login name as the one annotator when ``--annotators`` is not given (``annotator`` if it is not a valid name)."""
    import getpass

    from rlhf_plug.labeling.web.team import NAME

    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = ""
    return name if NAME.fullmatch(name or "") else "annotator"


def cmd_stats(args) -> int:
    from rich.console import Console

    from rlhf_plug.errors import UserError
    from rlhf_plug.labeling.stats import print_stats
    from rlhf_plug.plugins import get_plugin_manager
    from rlhf_plug.recipe import parse_assignment
    from rlhf_plug.registry import Registries

    judge_with = dict(parse_assignment(item, "--judge-with") for item in args.judge_with)
    if judge_with and not args.judge:
        raise UserError("--judge-with needs --judge")
    registries = Registries(get_plugin_manager(args.plugin)) if args.judge else None
    print_stats(args.file, Console(highlight=False), registries, args.judge, judge_with)
    return 0
