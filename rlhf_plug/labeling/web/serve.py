"""Start the page: load the prompts and answers, open the files, print each annotator's link, serve until Ctrl-C."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from rlhf_plug.errors import UserError
from rlhf_plug.labeling.session import LabelOptions

DEFAULT_CRITERIA = ("helpful", "honest", "harmless")


@dataclass
class WebOptions:
    annotators: list[str]
    overlap: int = 1
    criteria: list[str] = field(default_factory=lambda: list(DEFAULT_CRITERIA))
    host: str = "127.0.0.1"
    port: int = 8765
    allowed_hosts: list[str] = field(default_factory=list)  # Host headers accepted besides the served ones


def run_web(options: LabelOptions, web: WebOptions, registries, console) -> int:
    """Serve until Ctrl-C (status 0: every submission is already on disk)."""
    desk, where = prepare_desk(options, web, registries, console)
    sock = listen(web.host, web.port)
    port = sock.getsockname()[1]
    _print_links(console, desk, where, _link_host(web.host), port)
    desk.bank.prepare_in_background(sorted({i for name in desk.team.names for i in desk.pending(name)}))
    try:
        serve(desk, sock, served_hosts(web.host) + web.allowed_hosts)
    except KeyboardInterrupt:  # uvicorn shuts down on Ctrl-C, then raises it again: the normal way to stop
        pass
    finally:
        sock.close()
        desk.bank.close()  # a model still sampling ahead stops (else the interpreter aborts under it at exit)
    done = ", ".join(f"{n} {desk.progress(n).done}/{desk.progress(n).total}" for n in desk.team.names)
    console.print(f"stopped; done: {done}; {desk.store.path} holds {desk.store.rankings.rows} rankings", soft_wrap=True)
    return 0


def prepare_desk(options: LabelOptions, web: WebOptions, registries, console):
    """The shared state of the page, and where its prompts came from."""
    from rlhf_plug.labeling.session import check_options, load_answers, report_repair
    from rlhf_plug.labeling.store import RankingStore
    from rlhf_plug.labeling.web.desk import AnswerBank, Desk
    from rlhf_plug.labeling.web.team import Team

    check_options(options)
    if options.annotator:
        raise UserError("--annotator ranks with a reward function, without a page; with --web use --annotators NAMES")
    team = Team(web.annotators, web.overlap)
    prompts, where, make_sampler = load_answers(options, registries, console)
    store = RankingStore(Path(options.out), forget_skipped=options.retry_skipped, annotated=True)
    report_repair(console, store)
    return Desk(AnswerBank(prompts, make_sampler(), options.k), team, store, web.criteria), where


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so that a busy port is a one-line error and port 0 picks a free one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); try another --port") from None
    return sock


def build_server(desk, allowed_hosts: list[str] | None = None, log_level: str = "warning"):
    """A uvicorn server for the app (``server.run(sockets=[sock])``; ``server.should_exit = True`` stops it).

    ``allowed_hosts``: the ``Host`` headers served (see :func:`served_hosts`); None serves any.
    """
    import uvicorn

    from rlhf_plug.labeling.web.app import build_app

    # a page still waiting for the model must not keep Ctrl-C waiting
    config = uvicorn.Config(build_app(desk, allowed_hosts), log_level=log_level, access_log=False, timeout_graceful_shutdown=3)
    return uvicorn.Server(config)


def serve(desk, sock: socket.socket, allowed_hosts: list[str] | None = None) -> None:
    build_server(desk, allowed_hosts).run(sockets=[sock])


def served_hosts(host: str) -> list[str]:
    """The names a browser may put in ``Host`` for a server on ``host``: the address itself and the loopback
    names; listening everywhere, also this machine's name and addresses (``--allowed-hosts`` adds a proxy's)."""
    hosts = {host, "localhost", "127.0.0.1", "::1"}
    if host in ("0.0.0.0", "::", ""):
        name = socket.gethostname()
        hosts |= {name, socket.getfqdn()}
        try:
            hosts |= {info[4][0] for info in socket.getaddrinfo(name, None)}
        except OSError:
            pass
    return sorted(h.lower() for h in hosts if h and h not in ("0.0.0.0", "::"))


def _link_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()  # listening everywhere: this machine's name is what teammates can reach
    return f"[{host}]" if ":" in host else host


def _print_links(console, desk, where: str, host: str, port: int) -> None:
    team = desk.team
    shown = f"each prompt shown to {team.overlap} of {len(team.names)} annotators" if len(team.names) > 1 else "one annotator"
    console.print(f"{len(desk.bank.prompts)} prompts from {where}; {shown}; writing {desk.store.path}", soft_wrap=True)
    console.print("Private links (anyone with a link labels as that person; new links at each start):", soft_wrap=True)
    width = max(len(n) for n in team.names)
    for name in team.names:
        p = desk.progress(name)
        # soft_wrap: a link is never cut to fit the terminal
        console.print(f"  {name:<{width}}  {p.done:>3}/{p.total:<3} done  http://{host}:{port}/label/{team.tokens[name]}",
                      soft_wrap=True, highlight=False)
    console.print("Ctrl-C stops the server; every submission is already on disk.", soft_wrap=True)
