"""``rlhf-plug label --web``: the app's logic through Starlette's TestClient (tokens, validation, the file, concurrency, escaping).

The page in a real browser is tested in test_label_web_browser.py.
"""

from __future__ import annotations

import json
import sys
import threading

import pytest
from helpers import read_jsonl, write_jsonl

pytest.importorskip("starlette", reason="the web extra is not installed")

from label_web_helpers import XSS, candidate_rows, chat_rows, make_desk, shown_texts  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from rlhf_plug.cli import main  # noqa: E402
from rlhf_plug.labeling.web.app import build_app  # noqa: E402


def client_for(desk) -> TestClient:
    return TestClient(build_app(desk))


def url(desk, name: str, action: str = "") -> str:
    return f"/label/{desk.team.tokens[name]}" + (f"/{action}" if action else "")


def test_every_route_needs_a_valid_token(tmp_path):
    desk = make_desk(tmp_path)
    client = client_for(desk)
    ok = client.get(url(desk, "alice"))
    assert ok.status_code == 200 and "What is 2 + 2?" in ok.text
    assert client.get("/").status_code == 403
    for path in ("/label/not-a-token", "/label/" + desk.team.tokens["alice"][:-1]):
        page = client.get(path)
        assert page.status_code == 403 and "private link" in page.text and "What is 2 + 2?" not in page.text
    for action in ("submit", "skip", "undo"):
        assert client.post(f"/label/nope/{action}", data={"item": "0", "order": "1234"}).status_code == 403
    assert not (tmp_path / "rankings.jsonl").exists()
    assert not (tmp_path / "rankings.skipped.jsonl").exists()


def test_a_submission_is_one_row_in_the_rankings_format_with_the_extra_columns(tmp_path):
    desk = make_desk(tmp_path)
    client = client_for(desk)
    shown = shown_texts(desk, 0)
    form = {"item": "0", "order": "3 1 4 2", "rating.helpful.3": "7", "rating.honest.2": "1", "flag.2": "hallucination",
            "comment": "  answer 2 is wrong  "}
    response = client.post(url(desk, "alice", "submit"), data=form, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == url(desk, "alice") + "?note=saved"
    [row] = read_jsonl(tmp_path / "rankings.jsonl")
    assert row["prompt"] == "What is 2 + 2?" and row["annotator"] == "alice"
    assert row["completions"] == [shown[2], shown[0], shown[3], shown[1]]
    assert row["ratings"] == {"helpful": [7, None, None, None], "honest": [None, None, None, 1],
                              "harmless": [None, None, None, None]}
    assert row["flags"] == [[], [], [], ["hallucination"]]
    assert row["comment"] == "answer 2 is wrong" and row["timestamp"].endswith("Z")
    page = client.get(response.headers["location"])
    assert "Question 1: name a colour." in page.text and "1 of 4 done" in page.text and "Saved. Here is your next" in page.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"order": ""}, "rank all 4 answers first"),
        ({"order": "12"}, "ranking &#39;12&#39;: got 2 of 4 numbers (missing 3, 4)"),
        ({"order": "1123"}, "1 appears twice"),
        ({"order": "1235"}, "5 is not a completion number (1-4)"),
        ({"order": "s"}, "use the Skip button to skip"),
        ({"rating.helpful.1": "8"}, "answer 1: helpful rating &#39;8&#39; must be a whole number from 1 to 7"),
        ({"rating.honest.2": "0"}, "answer 2: honest rating &#39;0&#39;"),
        ({"rating.harmless.4": "two"}, "harmless rating &#39;two&#39;"),
        ({"rating.funny.1": "3"}, "unexpected field &#39;rating.funny.1&#39;"),
        ({"rating.helpful.5": "3"}, "unexpected field &#39;rating.helpful.5&#39;"),
        ({"flag.1": "boring"}, "answer 1: unknown flag &#39;boring&#39;"),
        ({"comment": "x" * 2001}, "the comment is 2001 characters; at most 2000"),
        ({"item": "1"}, "prompt 2 is not one of yours"),  # alice and bob, overlap 1: prompt 2 is bob's
        ({"item": "abc"}, "no valid prompt number"),
        ({"item": "¹"}, "no valid prompt number"),  # str.isdigit() says yes, int() says no
        ({"item": "１"}, "no valid prompt number"),  # fullwidth
        ({"item": "1e3"}, "no valid prompt number"),
        ({"rating.helpful.1": "７"}, "helpful rating &#39;７&#39; must be a whole number"),
        ({"order": "²134"}, "&#39;²&#39; is not a completion number"),
    ],
)
def test_a_bad_submission_is_shown_on_the_page_and_never_written(tmp_path, change, message):
    desk = make_desk(tmp_path, overlap=1)
    client = client_for(desk)
    form = {"item": "0", "order": "2 1 3 4", "comment": "kept", **change}
    response = client.post(url(desk, "alice", "submit"), data=form)
    assert response.status_code == 400
    assert "Not saved:" in response.text and message in response.text
    assert "What is 2 + 2?" in response.text  # the same prompt again
    assert not (tmp_path / "rankings.jsonl").exists()
    if "item" not in change and "comment" not in change:
        assert ">kept</textarea>" in response.text  # what was typed is not lost


def test_a_form_sent_twice_is_written_once(tmp_path):
    desk = make_desk(tmp_path)
    client = client_for(desk)
    form = {"item": "0", "order": "1234"}
    assert client.post(url(desk, "alice", "submit"), data=form, follow_redirects=False).status_code == 303
    again = client.post(url(desk, "alice", "submit"), data=form)
    assert again.status_code == 400 and "prompt 1 is already done" in again.text
    assert len(read_jsonl(tmp_path / "rankings.jsonl")) == 1


def test_concurrent_submissions_never_interleave_or_lose_a_line(tmp_path):
    names = [f"a{i}" for i in range(6)]
    rows = candidate_rows(8)
    for row in rows:  # long answers: a torn or interleaved write would break a line
        row["completions"] = [c * 200 for c in row["completions"]]
    desk = make_desk(tmp_path, names=names, overlap=3, rows=rows)
    client = client_for(desk)
    jobs = [(name, item) for name in names for item in desk.queues[name]]
    barrier = threading.Barrier(len(jobs) * 2)
    statuses = []

    def send(name: str, item: int) -> None:
        barrier.wait()
        form = {"item": str(item), "order": "4 3 2 1", "comment": f"{name} on {item}"}
        statuses.append(client.post(url(desk, name, "submit"), data=form, follow_redirects=False).status_code)

    threads = [threading.Thread(target=send, args=job) for job in jobs for _ in range(2)]  # every form sent twice
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    written = read_jsonl(tmp_path / "rankings.jsonl")  # every line parses: nothing interleaved
    assert sorted((r["annotator"], r["comment"]) for r in written) == sorted((n, f"{n} on {i}") for n, i in jobs)
    assert statuses.count(303) == len(jobs) and statuses.count(400) == len(jobs)
    assert len(written) == 8 * 3 and desk.store.rankings.rows == len(written)


def test_a_completion_with_markup_is_shown_as_text(tmp_path):
    desk = make_desk(tmp_path)
    page = client_for(desk).get(url(desk, "alice"))
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in page.text
    assert XSS not in page.text and "<script>document" not in page.text and "<img src=x" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]  # and inline scripts could not run anyway
    assert page.headers["referrer-policy"] == "no-referrer"


def test_skip_undo_and_resume_with_the_terminal_files(tmp_path):
    desk = make_desk(tmp_path, names=["alice"], overlap=1)
    client = client_for(desk)
    alice = url(desk, "alice")
    assert "Undo last submission</button>" in client.get(alice).text and "disabled" in client.get(alice).text
    client.post(alice + "/skip", data={"item": "0", "order": "ignored"})
    assert read_jsonl(tmp_path / "rankings.skipped.jsonl")[0]["annotator"] == "alice"
    client.post(alice + "/submit", data={"item": "1", "order": "1234"})
    client.post(alice + "/submit", data={"item": "2", "order": "4321"})
    assert [r["prompt"] for r in read_jsonl(tmp_path / "rankings.jsonl")] == [
        "Question 1: name a colour.", "Question 2: name a colour."]

    undone = client.post(alice + "/undo")  # the ranking of prompt 3 goes; the page shows prompt 3 again
    assert "Your last submission was taken back" in undone.text and "Question 2: name a colour." in undone.text
    assert len(read_jsonl(tmp_path / "rankings.jsonl")) == 1
    client.post(alice + "/undo")  # then the ranking of prompt 2
    client.post(alice + "/undo")  # then the skip of prompt 1
    assert read_jsonl(tmp_path / "rankings.jsonl") == [] and read_jsonl(tmp_path / "rankings.skipped.jsonl") == []
    assert "What is 2 + 2?" in client.get(alice).text

    client.post(alice + "/skip", data={"item": "0"})
    client.post(alice + "/submit", data={"item": "1", "order": "1234"})
    restarted = make_desk(tmp_path, names=["alice"], overlap=1)  # a new server over the same files
    assert restarted.current("alice") == 2
    progress = restarted.progress("alice")
    assert (progress.done, progress.skipped, progress.total) == (2, 1, 4)
    page = client_for(restarted).get(url(restarted, "alice"))
    assert "Question 2: name a colour." in page.text and "2 of 4 done (1 skipped)" in page.text


def test_overlap_shows_each_prompt_to_that_many_annotators(tmp_path):
    desk = make_desk(tmp_path, names=["alice", "bob", "carol"], overlap=2, rows=candidate_rows(6))
    seen = {i: [n for n in desk.team.names if i in desk.queues[n]] for i in range(6)}
    assert all(len(who) == 2 for who in seen.values())
    assert [len(desk.queues[n]) for n in desk.team.names] == [4, 4, 4]
    assert len(set(desk.team.tokens.values())) == 3 and all(len(t) >= 20 for t in desk.team.tokens.values())


def test_done_page_when_everything_is_labelled(tmp_path):
    desk = make_desk(tmp_path, names=["alice"], overlap=1, rows=candidate_rows(1))
    client = client_for(desk)
    client.post(url(desk, "alice", "submit"), data={"item": "0", "order": "1234"})
    page = client.get(url(desk, "alice"))
    assert "All done" in page.text and "1 of 1 done" in page.text


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------


def test_without_the_web_extra_the_error_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "starlette", None)  # as if not installed
    candidates = write_jsonl(tmp_path / "c.jsonl", candidate_rows(1))
    code = main(["label", "--web", "--candidates", str(candidates), "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert 'pip install "rlhf-plug[web]"' in err and "starlette" in err
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--port", "9000"], "--port is an option of the web page: add --web"),
        (["--web", "--annotators", "alice,bob", "--overlap", "3"], "--overlap must be between 1 and the number of annotators (2)"),
        (["--web", "--annotators", "alice,alice"], "'alice' appears twice"),
        (["--web", "--annotators", "al ice"], "'al ice' is not a valid name"),
        (["--web", "--criteria", "Helpful!"], "'Helpful!' is not a valid criterion"),
        (["--web", "--model", "m"], "--candidates gives the prompts and their answers: leave out --model and --prompts"),
        (["--web", "--k", "5"], "--k: with --candidates"),
        (["--web", "--annotator", "simulated_annotator"], "with --web use --annotators NAMES"),
    ],
)
def test_bad_web_options_are_one_line_errors(tmp_path, capsys, argv, words):
    candidates = write_jsonl(tmp_path / "c.jsonl", candidate_rows(1))
    code = main(["label", "--candidates", str(candidates), "--out", str(tmp_path / "r.jsonl"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err, err


@pytest.mark.parametrize(
    ("bad_row", "words"),
    [
        ({"prompt": "lonely", "completions": ["only one"]}, "row 3, column 'completions': a ranking needs at least 2 completions"),
        ({"prompt": "many", "completions": [str(i) for i in range(10)]}, "row 3, column 'completions': 10 answers; 2 to 9"),
        ({"prompt": "What is 2 + 2?", "completions": ["a", "b"]}, "row 3: the same prompt as row 1"),
        (chat_rows(1)[0], "row 3, column 'prompt'"),  # messages after text: the reward stage could not load the output
    ],
)
def test_a_bad_candidates_row_names_the_file_and_row(tmp_path, capsys, bad_row, words):
    candidates = write_jsonl(tmp_path / "c.jsonl", [*candidate_rows(2), bad_row])
    code = main(["label", "--web", "--candidates", str(candidates), "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{candidates}: {words}" in err, err


def test_a_busy_port_is_a_one_line_error(tmp_path, capsys):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    candidates = write_jsonl(tmp_path / "c.jsonl", candidate_rows(1))
    try:
        code = main(["label", "--web", "--candidates", str(candidates), "--out", str(tmp_path / "r.jsonl"),
                     "--port", str(taken.getsockname()[1])])
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert code == 2 and "cannot listen there" in err and "try another --port" in err


# --------------------------------------------------------------------------
# The reward stage reads what the page wrote
# --------------------------------------------------------------------------


def test_reward_stage_uses_every_annotators_rows_and_keeps_a_prompt_in_one_split(tmp_path, registries):
    from rlhf_plug.data import load_split
    from rlhf_plug.recipe import DataRef
    from rlhf_plug_plugins.stages.reward import REWARD_FORMATS

    desk = make_desk(tmp_path, names=["alice", "bob"], overlap=2, rows=chat_rows(6))  # messages stay messages
    client = client_for(desk)
    for name, order in (("alice", "1 2 3 4"), ("bob", "2 1 4 3")):
        for item in desk.queues[name]:
            form = {"item": str(item), "order": order, "rating.helpful.1": "5", "flag.2": "harmful"}
            assert client.post(url(desk, name, "submit"), data=form, follow_redirects=False).status_code == 303
    rows = read_jsonl(tmp_path / "rankings.jsonl")
    assert len(rows) == 12
    ref = DataRef.model_validate({"use": "file", "with": {"path": str(tmp_path / "rankings.jsonl")}, "eval_fraction": 0.5})
    split = load_split(registries.get("data_source", "file").build(ref.with_), ref, accept=REWARD_FORMATS, seed=0)
    assert split.format == "preference" and len(split.train) + len(split.eval) == 12 * 6  # both annotators' pairs
    train_prompts = {json.dumps(p) for p in split.train["prompt"]}
    eval_prompts = {json.dumps(p) for p in split.eval["prompt"]}
    assert train_prompts and eval_prompts and not train_prompts & eval_prompts  # a prompt's pairs stay in one split
    assert set(split.train["annotator"]) == {"alice", "bob"}


def test_a_page_waiting_for_the_model_goes_before_the_prompts_sampled_ahead():
    from rlhf_plug.labeling.sampling import Samples
    from rlhf_plug.labeling.web.desk import AnswerBank

    release, calls = threading.Event(), []

    class SlowSampler:
        def sample(self, prompt, k, index):
            calls.append(index)
            if index == 0:
                release.wait(30)  # the model is busy with prompt 1 when the page asks for prompt 40
            return Samples([f"{prompt} {i}" for i in range(k)], [[]] * k, [True] * k)

    bank = AnswerBank([f"p{i}" for i in range(50)], SlowSampler(), 2)
    bank.prepare_in_background(list(range(50)))
    got = []
    page = threading.Thread(target=lambda: got.append(bank.get(40)))
    page.start()
    while not any(priority == AnswerBank.NOW for priority, _, _ in list(bank._queue.queue)):
        threading.Event().wait(0.01)  # until the page's request is queued
    release.set()
    page.join(30)
    assert got[0].completions == ["p40 0", "p40 1"]
    assert calls[:2] == [0, 40]  # not after the 39 prompts queued before it


def test_with_a_model_every_annotator_sees_the_same_sampled_answers(tmp_path, tiny_model, registries):
    import io

    from rich.console import Console

    from rlhf_plug.labeling.sampling import Sampler
    from rlhf_plug.labeling.session import LabelOptions
    from rlhf_plug.labeling.web.serve import WebOptions, prepare_desk

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "What is 37 + 25?"}, {"prompt": "Add 87 and 13."}])
    options = LabelOptions(model=str(tiny_model), prompts=str(prompts), out=tmp_path / "r.jsonl", max_new_tokens=6, seed=3)
    desk, _ = prepare_desk(options, WebOptions(["alice", "bob"], 2), registries, Console(file=io.StringIO()))
    expected = Sampler(str(tiny_model), max_new_tokens=6, temperature=0.8, seed=3).sample("Add 87 and 13.", 4, 1)
    client = client_for(desk)
    client.post(url(desk, "alice", "skip"), data={"item": "0"})
    client.post(url(desk, "bob", "skip"), data={"item": "0"})
    for name in ("alice", "bob"):
        page = client.get(url(desk, name))
        assert "Add 87 and 13." in page.text
        assert client.post(url(desk, name, "submit"), data={"item": "1", "order": "4321"},
                           follow_redirects=False).status_code == 303
    rows = read_jsonl(tmp_path / "r.jsonl")
    assert [r["annotator"] for r in rows] == ["alice", "bob"]
    assert rows[0]["completions"] == rows[1]["completions"] == expected.completions[::-1]


def test_the_terminal_ranks_a_candidates_file_too(tmp_path, monkeypatch, capsys):
    import io

    candidates = write_jsonl(tmp_path / "c.jsonl", candidate_rows(2))
    monkeypatch.setattr("sys.stdin", io.StringIO("4321\ns\n"))
    code = main(["label", "--candidates", str(candidates), "--out", str(tmp_path / "r.jsonl"), "--seed", "5"])
    assert code == 0, capsys.readouterr().err
    [row] = read_jsonl(tmp_path / "r.jsonl")
    assert row["prompt"] == "What is 2 + 2?" and sorted(row["completions"]) == sorted(candidate_rows(1)[0]["completions"])
    assert read_jsonl(tmp_path / "r.skipped.jsonl") == [{"prompt": "Question 1: name a colour."}]


REWARD_RECIPE = """
name: rm-from-the-page
model: {model}
output_dir: {out}
quantization: none
stages:
  - reward:
      data: {{use: file, with: {{path: {data}}}, eval_fraction: 0.25}}
      lora: {{r: 4, lora_alpha: 8}}
      args: {{max_steps: 2, per_device_train_batch_size: 8, max_length: 64}}
"""


def test_the_reward_stage_trains_on_what_the_page_wrote(tmp_path, tiny_model, registries, pm):
    import io

    from rich.console import Console

    from rlhf_plug.recipe import load_recipe
    from rlhf_plug.runner import run_recipe

    desk = make_desk(tmp_path, names=["alice", "bob"], overlap=2, rows=chat_rows(8))
    client = client_for(desk)
    for name, order in (("alice", "1 2 3 4"), ("bob", "2 1 4 3")):
        for item in desk.queues[name]:
            form = {"item": str(item), "order": order, "rating.honest.2": "3", "flag.1": "harmful", "comment": "c"}
            client.post(url(desk, name, "submit"), data=form)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(REWARD_RECIPE.format(model=tiny_model, out=tmp_path / "runs", data=tmp_path / "rankings.jsonl"))
    results = run_recipe(load_recipe(recipe, registries, []), registries, pm, Console(file=io.StringIO(), width=200))
    assert results["reward"]["train_pairs"] + results["reward"]["eval_pairs"] == 16 * 6  # every row of both annotators
    assert results["reward"]["steps"] == 2


# --------------------------------------------------------------------------
# Host header (DNS rebinding): only the names the server answers to
# --------------------------------------------------------------------------


def _get(url: str, host: str | None = None) -> int:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", parts.path, headers={"Host": host} if host else {})
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.parametrize("extra", [[], ["--allowed-hosts", "label.example.org"]])
def test_the_page_answers_only_to_its_own_host_names(tmp_path, extra):
    import re
    import subprocess

    from helpers import cli_env, command

    candidates = write_jsonl(tmp_path / "c.jsonl", candidate_rows(1))
    proc = subprocess.Popen(command("label", "--web", "--candidates", str(candidates), "--out", str(tmp_path / "r.jsonl"),
                                    "--annotators", "alice", "--port", "0", *extra),
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        link = None
        for line in proc.stdout:
            if match := re.search(r"(http://127\.0\.0\.1:\d+/label/\S+)", line):
                link = match.group(1)
                break
        assert link, proc.stderr.read() if proc.poll() is not None else "no link printed"
        port = link.split(":")[2].split("/")[0]
        assert _get(link) == 200
        assert _get(link, f"localhost:{port}") == 200
        assert _get(link, "evil.example") == 400, "a rebinding page's Host must not be served"
        assert _get(link, f"label.example.org:{port}") == (200 if extra else 400)
    finally:
        proc.terminate()
        proc.wait(30)
