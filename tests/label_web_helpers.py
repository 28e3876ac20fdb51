"""Shared by the web labelling tests: a candidates file, a desk over it, and the page served by uvicorn in a thread."""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from pathlib import Path

from helpers import write_jsonl
from rich.console import Console

XSS = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\"><b>bold?</b>"


def candidate_rows(n: int = 4) -> list[dict]:
    """``n`` prompts with 4 distinct answers each; prompt 1's last answer is hostile markup."""
    rows = [{"prompt": "What is 2 + 2?", "completions": ["4", "5", "The answer is 4.", XSS]}]
    for i in range(1, n):
        rows.append({"prompt": f"Question {i}: name a colour.", "completions": [f"Answer {c} to question {i}." for c in "ABCD"]})
    return rows


def chat_rows(n: int) -> list[dict]:
    """``n`` conversational prompts (lists of messages) with 4 answers each."""
    return [{"prompt": [{"role": "user", "content": f"Chat {i}: say hello."}],
             "completions": [[{"role": "assistant", "content": f"Hello {c} ({i})."}] for c in "ABCD"]} for i in range(n)]


def make_desk(tmp_path: Path, names=("alice", "bob"), overlap: int = 2, rows=None, out: Path | None = None, criteria=None):
    from rlhf_plug.labeling.session import LabelOptions
    from rlhf_plug.labeling.web.serve import DEFAULT_CRITERIA, WebOptions, prepare_desk

    candidates = tmp_path / "candidates.jsonl"
    if rows is not None or not candidates.exists():
        write_jsonl(candidates, rows if rows is not None else candidate_rows())
    out = out or tmp_path / "rankings.jsonl"
    options = LabelOptions(model=None, prompts=None, out=out, candidates=candidates)
    web = WebOptions(list(names), overlap, list(DEFAULT_CRITERIA if criteria is None else criteria))
    desk, _ = prepare_desk(options, web, None, Console(file=io.StringIO()))
    return desk


def shown_texts(desk, item: int) -> list[str]:
    from rlhf_plug.labeling.terminal import message_text

    return [message_text(c) for c in desk.bank.get(item).completions]


@contextmanager
def serving(desk):
    """The app on 127.0.0.1 and a free port, served by uvicorn in a thread; yields the base URL."""
    from rlhf_plug.labeling.web.serve import build_server, listen

    sock = listen("127.0.0.1", 0)
    server = build_server(desk)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    started = threading.Event()
    while thread.is_alive() and not server.started:
        started.wait(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
