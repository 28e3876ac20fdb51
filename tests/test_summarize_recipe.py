"""The summarize-from-feedback recipe: Hub data or its built-in fallback, and the summary judge."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from helpers import REPO, cli
from rlhf_plug_plugins.data.sources import BuiltinSource, HubSource

from rlhf_plug.data import as_rows, prepare_rows
from rlhf_plug.errors import DataError

RECIPE = "summarize-from-feedback"
SAMPLE = {  # built-in file -> the format it must have
    "tldr_demos": "prompt_completion",
    "tldr_comparisons": "preference",
    "tldr_prompts": "prompt_only",
    "tldr_prompts_eval": "prompt_only",
}
# (hub path, split) -> built-in sample the recipe falls back to, in the order the stages load them
HUB_REFS = [
    (("trl-lib/tldr", "train"), "tldr_demos"),
    (("trl-lib/tldr-preference", "train"), "tldr_comparisons"),
    (("trl-lib/tldr", "train"), "tldr_prompts"),
    (("trl-lib/tldr", "validation"), "tldr_prompts_eval"),
]
PROMPT_RE = re.compile(r"\ASUBREDDIT: r/\w+\n\nTITLE: [^\n]+\n\nPOST: [^\n]+\n\nTL;DR:\Z")

POST = (
    "SUBREDDIT: r/gardening\n\nTITLE: Slugs are eating my lettuce seedlings\n\nPOST: Every night slugs eat the lettuce "
    "seedlings in my raised bed. I tried copper tape around the bed and beer traps, but the slugs still get in. I don't "
    "want to use poison because my cat walks through the garden. What else can I do to protect the lettuce?\n\nTL;DR:"
)
FAITHFUL = (
    "Slugs still eat my lettuce seedlings every night with copper tape and beer traps. "
    "How do I protect the lettuce if I don't want to use poison?"
)


# --------------------------------------------------------------------------
# Offline: the built-in sample, with a notice (a real subprocess, real datasets)
# --------------------------------------------------------------------------


def test_validates_offline_with_the_builtin_sample(tmp_path):
    proc = cli("validate", RECIPE, HF_HOME=str(tmp_path / "hf"))  # offline, with an empty Hub cache
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for (path, split), sample in HUB_REFS:
        notice = (f"hub:{path}[{split}] is not reachable (HF_HUB_OFFLINE is set and there is no cached copy); "
                  f"using the built-in sample builtin:{sample}")
        assert notice in proc.stdout
        assert re.search(rf"\d+ rows from builtin:{sample} \(", proc.stdout)
    assert f"ok {REPO / 'recipes' / RECIPE}.yaml: {RECIPE} (sft -> reward -> ppo)" in proc.stdout


# --------------------------------------------------------------------------
# Online: datasets.load_dataset mocked
# --------------------------------------------------------------------------


def _hub_datasets():
    """Tiny stand-ins for trl-lib/tldr and trl-lib/tldr-preference (text format)."""
    from datasets import Dataset, DatasetDict

    def prompt(i):
        return f"SUBREDDIT: r/mocked\n\nTITLE: Mocked title {i}\n\nPOST: A mocked post number {i} about a mocked problem.\n\nTL;DR:"

    def tldr(n):
        return Dataset.from_list([{"prompt": prompt(i), "completion": f" mocked summary {i}"} for i in range(n)])

    def pairs(n):
        return Dataset.from_list([{"prompt": prompt(i), "chosen": f" good {i}", "rejected": f" bad {i}"} for i in range(n)])

    return {
        "trl-lib/tldr": DatasetDict(train=tldr(20), validation=tldr(7), test=tldr(5)),
        "trl-lib/tldr-preference": DatasetDict(train=pairs(30), validation=pairs(9)),
    }


@pytest.fixture
def online(monkeypatch):
    """Not offline; ``datasets.load_dataset`` serves the stand-ins and records each call."""
    import datasets

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    hub, calls, state = _hub_datasets(), [], {"error": None}

    def fake_load_dataset(path, name=None, *, split=None, revision=None, **kwargs):
        calls.append((path, split))
        if state["error"] is not None:
            raise state["error"]
        if split not in hub[path]:
            raise ValueError(f'Unknown split "{split}". Should be one of {list(hub[path])}.')
        return hub[path][split]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls, state


def validate(capsys, *overrides: str) -> tuple[int, str, str]:
    from rlhf_plug.cli import main

    args = [item for o in overrides for item in ("--set", o)]
    code = main(["validate", RECIPE, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_online_uses_the_hub_datasets(online, capsys):
    calls, _ = online
    code, out, err = validate(capsys)
    assert code == 0, err
    assert calls == [ref for ref, _ in HUB_REFS]
    assert "20 rows from hub:trl-lib/tldr[train] (prompt_completion)" in out
    assert "30 rows from hub:trl-lib/tldr-preference[train] (preference)" in out
    assert "20 rows from hub:trl-lib/tldr[train] (prompt_completion); all used (eval_fraction: 0, no split)" in out  # PPO prompts
    assert "7 rows from hub:trl-lib/tldr[validation] (prompt_completion)" in out
    assert "builtin:" not in out and "not reachable" not in out


class TransportError(Exception):
    """Named like httpx's base class of connection errors (not imported here)."""


class ConnectError(TransportError):
    pass


@pytest.mark.parametrize(
    "error",
    [ConnectionError("Couldn't reach 'trl-lib/tldr' on the Hub (ConnectTimeout)"), ConnectError("[Errno -3] name resolution")],
    ids=["ConnectionError", "httpx-like"],
)
def test_connectivity_error_falls_back_with_a_notice(online, capsys, error):
    calls, state = online
    state["error"] = error
    code, out, err = validate(capsys)
    assert code == 0, err
    assert len(calls) == len(HUB_REFS)
    for (path, split), sample in HUB_REFS:
        assert (f"hub:{path}[{split}] is not reachable ({type(error).__name__}: {error}); "
                f"using the built-in sample builtin:{sample}") in out
        assert re.search(rf"\d+ rows from builtin:{sample} \(", out)


def test_bad_split_is_a_one_line_error_naming_the_recipe_key(online, capsys):
    calls, _ = online
    code, out, err = validate(capsys, "sft.data.with.split=trian")
    assert code == 2
    assert calls == [("trl-lib/tldr", "trian")]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    # the bad value came from --set, so the error names the --set, not the recipe line
    assert re.match(r"error: --set sft\.data\.with\.split=trian: stages\[0\]\.sft\.data: hub:trl-lib/tldr\[trian\]: could not load: ValueError: ", line)
    assert "Unknown split" in line
    assert "builtin:" not in out


def test_a_non_connectivity_error_does_not_fall_back(online):
    _, state = online
    state["error"] = FileNotFoundError("Dataset 'trl-lib/tldr' doesn't exist on the Hub")
    with pytest.raises(DataError, match=r"hub:trl-lib/tldr\[train\]: could not load: FileNotFoundError"):
        HubSource("trl-lib/tldr", fallback="tldr_demos").load()


def test_unknown_fallback_is_an_error_before_loading():
    with pytest.raises(DataError, match=r"builtin:tldr_demoz: no such built-in dataset; available: .*tldr_demos"):
        HubSource("trl-lib/tldr", fallback="tldr_demoz")


# --------------------------------------------------------------------------
# summary_judge
# --------------------------------------------------------------------------


@pytest.fixture
def judge(registries):
    return registries.get("reward_function", "summary_judge").build({})


def score(judge, summary: str, prompt: str = POST) -> float:
    return judge([prompt], [summary])[0]


@pytest.mark.parametrize(
    "worse",
    [
        "My neighbour's goat ate my tomatoes while I was on holiday in Spain, and the landlord blames my brother.",  # made up
        POST.split("POST: ")[1].removesuffix("\n\nTL;DR:"),  # the post copied verbatim
        FAITHFUL + " The copper tape was around the raised bed and the beer traps were set every night, but every night "
        "the slugs still got in and ate the lettuce, and my cat walks through the garden so I won't use poison.",  # too long
        "",
        "Slugs eat my lettuce. Slugs eat my lettuce. Slugs eat my lettuce. Slugs eat my lettuce.",  # repetitive
    ],
    ids=["hallucinated", "verbatim-copy", "over-long", "empty", "repetitive"],
)
def test_judge_prefers_a_faithful_short_summary(judge, worse):
    assert score(judge, FAITHFUL) > score(judge, worse) + 0.2


def test_judge_parts_explain_the_scores():
    from rlhf_plug_plugins.rewards.summary_judge import score_summary

    copied = score_summary(POST, POST.split("POST: ")[1].removesuffix("\n\nTL;DR:"))
    assert copied["coverage"] == 1.0 and copied["copying"] == -1.0
    made_up = score_summary(POST, "My neighbour's goat ate my tomatoes in Spain.")
    assert made_up["hallucination"] > 0.8 and made_up["coverage"] == 0.0
    assert score_summary(POST, "")["total"] == -1.0
    salad = score_summary(POST, "slugs lettuce seedlings copper tape beer traps poison cat garden")
    assert salad["fluency"] == -0.3 and salad["total"] < score_summary(POST, FAITHFUL)["total"] - 0.2
    assert score_summary(POST, FAITHFUL)["hallucination"] == 0.0


def test_judge_reads_conversational_inputs_and_stays_in_range(judge):
    as_text = score(judge, FAITHFUL)
    as_chat = judge([[{"role": "user", "content": POST}]], [[{"role": "assistant", "content": FAITHFUL}]])[0]
    assert as_chat == as_text
    samples = ["", "x", FAITHFUL, FAITHFUL * 5, "word " * 200, POST]
    assert all(-1.0 <= s <= 1.0 for s in judge([POST] * len(samples), samples))


def test_judge_takes_a_prompt_without_post_markers(judge):
    article = "Article:\nThe city council voted to close the old library on Main Street next spring.\n\nTL;DR:"
    assert score(judge, "The council voted to close the Main Street library.", article) > score(judge, "I love pizza.", article)


# --------------------------------------------------------------------------
# The built-in sample
# --------------------------------------------------------------------------


def _rows(name: str) -> list[dict]:
    return as_rows(BuiltinSource(name).load())


@pytest.mark.parametrize("name", sorted(SAMPLE))
def test_builtin_sample_is_well_formed(name):
    source = BuiltinSource(name)
    rows, fmt = prepare_rows(_rows(name), source=source.describe(), columns={}, fmt="auto", accept=(SAMPLE[name],), limit=None)
    assert fmt == SAMPLE[name]
    for row in rows:
        assert PROMPT_RE.match(row["prompt"]), row["prompt"]
        for column in ("completion", "chosen", "rejected"):
            if column in row:
                assert row[column].startswith(" ") and row[column].strip()


def test_builtin_sample_is_small_and_its_files_share_no_post():
    from rlhf_plug_plugins.data.sources import BUILTIN_DIR

    sizes = [(BUILTIN_DIR / f"{name}.jsonl").stat().st_size for name in SAMPLE]
    assert sum(sizes) < 200_000
    prompts = {name: {row["prompt"] for row in _rows(name)} for name in SAMPLE}
    assert 150 <= sum(len(_rows(name)) for name in SAMPLE) <= 300
    names = sorted(SAMPLE)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not prompts[a] & prompts[b], (a, b)


def test_comparison_pairs_agree_with_the_judge(judge):
    rows = _rows("tldr_comparisons")
    prompts = [r["prompt"] for r in rows]
    chosen, rejected = judge(prompts, [r["chosen"] for r in rows]), judge(prompts, [r["rejected"] for r in rows])
    margins = [c - r for c, r in zip(chosen, rejected)]
    assert min(margins) >= 0.15 - 1e-9


def test_the_build_script_reproduces_the_sample(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("build_tldr_sample", REPO / "scripts" / "build_tldr_sample.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "OUT_DIR", tmp_path)
    assert script.main() == 0
    from rlhf_plug_plugins.data.sources import BUILTIN_DIR

    for name in SAMPLE:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (BUILTIN_DIR / f"{name}.jsonl").read_bytes(), name
    assert json.loads((tmp_path / "tldr_demos.jsonl").read_text().splitlines()[0])["completion"].startswith(" ")
