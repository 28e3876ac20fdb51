"""Every bad input is one line and exit status 2 (issue 14): data files that are not what they
claim, rankings that repeat a completion, plugins that exit or raise in a hook, rewards and
updates that are not finite, a folder given as `label --out`, and messages that said the wrong thing."""

from __future__ import annotations

import gzip
import re
import subprocess

import pytest
from helpers import assert_one_line_error, cli, read_jsonl, write_jsonl, write_recipe

from rlhf_plug.errors import DataError, PluginError, RewardError

def main_cli(capsys, *args: str) -> subprocess.CompletedProcess:
    """``rlhf-plug ARGS`` in this process (imports are paid once), as a CompletedProcess for assert_one_line_error."""
    from rlhf_plug.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


SFT = """name: bad
model: {model}
stages:
  - sft: {{data: {{use: file, with: {{path: {path}}}, eval_fraction: 0.0}}}}
"""

# --------------------------------------------------------------------------
# Data files
# --------------------------------------------------------------------------


def _truncated_gz(path):
    rows = b"".join(b'{"prompt": "question %d", "completion": " answer"}\n' % i for i in range(3000))
    packed = gzip.compress(rows)
    path.write_bytes(packed[: len(packed) // 2])


def _bytes(data: bytes):
    return lambda path: path.write_bytes(data)


def _rows(*rows):
    return lambda path: write_jsonl(path, list(rows))


@pytest.mark.parametrize(
    ("name", "write", "words"),
    [
        ("latin1.jsonl", _bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "b"}\n'),
         ["row 2: not UTF-8 text (byte 0xe9"]),
        ("latin1.json", _bytes(b'[{"prompt": "a", "completion": "b"},\n{"prompt": "caf\xe9", "completion": "b"}]\n'),
         ["line 2: not UTF-8 text"]),
        ("cut.jsonl.gz", _truncated_gz, ["cut.jsonl.gz: row ", "the gzip file is cut off or corrupt"]),
        ("mixed.jsonl", _rows({"prompt": "a", "completion": "b"},
                              {"prompt": [{"role": "user", "content": "x"}], "completion": "b"}),
         ["row 2, column 'prompt': a list of objects here, but a string in row 1"]),
        ("extra.jsonl", _rows({"prompt": "a", "completion": "b", "id": 1}, {"prompt": "c", "completion": "d", "id": 2},
                              {"prompt": "e", "completion": "f", "id": "x3"}),
         ["row 3, column 'id': a string here, but a number in row 1"]),
    ],
)
def test_a_bad_data_file_names_the_file_and_the_row(tmp_path, tiny_model, capsys, name, write, words):
    write(tmp_path / name)
    recipe = write_recipe(tmp_path / "recipe.yaml", SFT.format(model=tiny_model, path=name))
    assert_one_line_error(main_cli(capsys, "validate", str(recipe)), str(tmp_path / name), *words)


def test_column_types_in_arrows_terms():
    from rlhf_plug.column_types import check_column_types

    fine = [{"a": 1, "b": {"x": 1}, "c": None}, {"a": 2.5, "b": {"y": "s"}, "c": ["t"]}, {"a": None, "b": None, "c": []}]
    check_column_types(fine, "f")  # ints and floats mix, null fits anything, objects may differ in keys
    with pytest.raises(DataError, match=r"f: row 2, column 'b' \(key 'x'\): a string here, but a number in row 1"):
        check_column_types([{"b": {"x": 1}}, {"b": {"x": "one"}}], "f")
    with pytest.raises(DataError, match=r"row 1, column 'completions': item 1 is a list of objects, but earlier items are a string"):
        check_column_types([{"completions": ["a", [{"role": "user", "content": "b"}]]}], "f")
    with pytest.raises(DataError, match=r"row 2, column 'ok': a number here, but true/false in row 1"):
        check_column_types([{"ok": True}, {"ok": 1}], "f")


def test_a_ranking_that_repeats_a_completion_names_the_row(tmp_path, tiny_model):
    write_jsonl(tmp_path / "ranks.jsonl", [{"prompt": "p1", "completions": ["a", "b"]},
                                           {"prompt": "p2", "completions": ["x", "y", "x"]}])
    recipe = write_recipe(tmp_path / "recipe.yaml", SFT.format(model=tiny_model, path="ranks.jsonl").replace("sft:", "reward:"))
    # With Python's default warning filters (an empty PYTHONWARNINGS), as a user runs it: TRL's configs
    # used to add transformers' FutureWarning about gradient_checkpointing (2 more lines on stderr).
    proc = cli("validate", str(recipe), PYTHONWARNINGS="")
    assert_one_line_error(proc, "ranks.jsonl: row 2, column 'completions'", "items 0 and 2 are the same completion")


# --------------------------------------------------------------------------
# Plugins
# --------------------------------------------------------------------------


def test_a_plugin_that_exits_at_import_is_named(tmp_path):
    (tmp_path / "quitter.py").write_text("import sys\nsys.exit(0)\n")
    proc = cli("-p", "quitter", "plugins", cwd=tmp_path, PYTHONPATH=str(tmp_path))
    assert_one_line_error(proc, "plugin module 'quitter' called sys.exit(0) while importing")


def test_a_missing_recipe_plugin_names_the_plugins_key(tmp_path, tiny_model):
    recipe = write_recipe(tmp_path / "recipe.yaml", f"name: p\nmodel: {tiny_model}\nplugins: [os, no_such_plugin_mod]\n"
                          "stages:\n  - sft: {data: {use: builtin, with: {name: demos}}}\n")
    assert_one_line_error(cli("validate", str(recipe)), "recipe.yaml:3: plugins[1]: plugin module 'no_such_plugin_mod'")


HOOKS = """
import sys
from rlhf_plug import hookimpl

@hookimpl
def {hook}({args}):
    {body}
"""


@pytest.mark.parametrize(
    ("hook", "args", "body", "words"),
    [
        ("rlhf_configure", "recipe", "raise KeyError('wandb')", "failed in rlhf_configure: KeyError: 'wandb'"),
        ("rlhf_stage_start", "stage", "sys.exit(0)", "failed in rlhf_stage_start: called sys.exit(0)"),
        ("rlhf_step_end", "stage, step, metrics", "1 / 0", "failed in rlhf_step_end: ZeroDivisionError"),
        ("rlhf_evaluate", "metrics", "raise ValueError('no')", "failed in rlhf_evaluate: ValueError: no"),
    ],
)
def test_a_raising_lifecycle_hook_names_the_plugin(make_module, hook, args, body, words):
    from rlhf_plug.plugins import get_plugin_manager

    name = make_module(f"hooky_{hook}", HOOKS.format(hook=hook, args=args, body=body))
    pm = get_plugin_manager([name], autoload=False)
    caller = getattr(pm.hook, hook)
    with pytest.raises(PluginError, match=re.escape(f"plugin '{name}' {words}")):
        if caller.is_historic():
            caller.call_historic(kwargs={"recipe": None})
        else:
            caller(**dict.fromkeys(caller.spec.argnames))


def test_a_raising_stage_end_hook_is_one_line_in_a_run(tmp_path, tiny_model):
    (tmp_path / "end_hook.py").write_text(HOOKS.format(hook="rlhf_stage_end", args="stage, results",
                                                       body="raise RuntimeError('tracker down')"))
    recipe = write_recipe(tmp_path / "recipe.yaml", f"""name: hooky
model: {tiny_model}
quantization: none
plugins: [end_hook]
stages:
  - sft: {{data: {{use: builtin, with: {{name: demos}}, eval_fraction: 0.0}}, args: {{max_steps: 1, per_device_train_batch_size: 2}}}}
""")
    proc = cli("run", str(recipe), cwd=tmp_path, PYTHONPATH=str(tmp_path))
    assert_one_line_error(proc, "plugin 'end_hook' failed in rlhf_stage_end: RuntimeError: tracker down")


# --------------------------------------------------------------------------
# Rewards and updates that are not finite (PPO, in-process on the tiny policy)
# --------------------------------------------------------------------------


def test_a_huge_finite_reward_is_refused_by_the_contract():
    from rlhf_plug.rewards import REWARD_LIMIT, check_reward_output

    assert check_reward_output([REWARD_LIMIT, -REWARD_LIMIT], 2, "r") == [1e6, -1e6]
    with pytest.raises(RewardError, match=r"r returned 1e\+300 for completion 1; rewards must lie within ±1e\+06"):
        check_reward_output([0.0, 1e300], 2, "r")


BROKEN = """
from rlhf_plug import hookimpl
from rlhf_plug_plugins.objectives.losses import PPOClipLoss


class EvenLength:
    def __call__(self, prompts, completions, completion_ids=None, **kw):
        return [float(len(ids) % 2) for ids in completion_ids]


class Huge:
    def __init__(self):
        self.calls = 0

    def __call__(self, prompts, completions, **kw):
        self.calls += 1
        return [1e300 if self.calls >= 3 else 1.0 for _ in completions]


class Exploding(PPOClipLoss):
    \"\"\"PPO-clip with an undefined metric every update, and a NaN loss from the third update on.\"\"\"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        loss, metrics = super().__call__(batch)
        return (loss * float("nan") if self.calls >= 3 else loss), {**metrics, "ratio_spread": float("nan")}


@hookimpl
def rlhf_register_reward_functions(register):
    register("huge", Huge)
    register("even_length", EvenLength)


@hookimpl
def rlhf_register_losses(register):
    register("exploding", Exploding)
"""

PPO = """name: broken
model: {model}
output_dir: {out}
quantization: none
plugins: [broken_parts]
stages:
  - ppo:
      prompts: {{use: builtin, with: {{name: prompts}}, eval_fraction: 0.0}}
      reward: [{{use: {reward}}}]
      loss: {{use: {loss}}}
      generation: {{max_new_tokens: 2, temperature: 1.0}}
      lora: {{r: 8, lora_alpha: 16}}
      args: {{steps: 5, batch_size: 4, learning_rate: 1.0e-2, save_every: 2}}
"""


@pytest.mark.parametrize(
    ("reward", "loss", "words"),
    [
        ("huge", "ppo_clip", ["reward[0] 'huge' at PPO step 3 returned 1e+300", "within ±1e+06"]),
        ("even_length", "exploding", ["stages[0].ppo.loss: loss 'exploding' at PPO step 3 is nan",
                                      "stopped before the update was applied"]),
    ],
)
def test_a_non_finite_step_stops_and_keeps_the_last_checkpoint(tmp_path, tiny_policy, make_module, capsys, one_thread,
                                                               reward, loss, words):
    from rlhf_plug.cli import main

    make_module("broken_parts", BROKEN)
    path = write_recipe(tmp_path / "recipe.yaml", PPO.format(model=tiny_policy, out=tmp_path / "runs", reward=reward, loss=loss))
    capsys.readouterr()
    code = main(["run", str(path)])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: "), captured.err
    for word in words:
        assert word in errors[0], errors[0]
    partial = tmp_path / "runs" / "broken" / ".ppo.partial"
    assert sorted(p.name for p in (partial / "checkpoints").iterdir()) == ["step-000002"]
    train = [r for r in read_jsonl(partial / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    if loss == "exploding":  # an undefined metric is logged as null, with a notice, not dropped
        assert all(r["ratio_spread"] is None for r in train)
        notices = [line for line in captured.out.splitlines() if line.startswith("notice: stage ppo")]
        assert len(notices) == 1 and "ratio_spread" in notices[0], captured.out  # once, not every step
        assert "not finite; logged as null in metrics.jsonl" in notices[0]


# --------------------------------------------------------------------------
# label --out
# --------------------------------------------------------------------------


def test_label_out_pointing_at_a_folder(tmp_path, tiny_model):
    folder = tmp_path / "labels"
    folder.mkdir()
    proc = cli("label", "--model", str(tiny_model), "--prompts", "builtin:prompts", "--out", str(folder))
    assert_one_line_error(proc, f"--out {folder}: is a folder", str(folder / "rankings.jsonl"))
    assert list(folder.iterdir()) == []


# --------------------------------------------------------------------------
# Messages that pointed the wrong way
# --------------------------------------------------------------------------


def test_a_missing_local_model_folder_is_not_blamed_on_offline_mode(tmp_path, capsys, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = write_recipe(tmp_path / "recipe.yaml", "name: m\nmodel: models/mine\nstages:\n"
                          "  - sft: {data: {use: builtin, with: {name: demos}}}\n")
    line = assert_one_line_error(main_cli(capsys, "validate", str(recipe)), "model 'models/mine' not found",
                                 f"no folder {tmp_path / 'models' / 'mine'}")
    assert "offline" not in line and "HF_HUB_OFFLINE" not in line


@pytest.mark.parametrize("value", ["r:16", "{r:16, lora_alpha:32}"])
def test_a_set_mapping_without_spaces_is_invalid_yaml(tmp_path, tiny_model, capsys, value):
    recipe = write_recipe(tmp_path / "recipe.yaml", SFT.format(model=tiny_model, path="x.jsonl"))
    line = assert_one_line_error(main_cli(capsys, "validate", str(recipe), "--set", f"sft.lora={value}"),
                                 f"--set sft.lora={value}: invalid YAML mapping", "space after each colon")
    assert "dictionary" not in line and "LoraConfig" not in line


def test_text_with_colons_in_set_is_still_text():
    from rlhf_plug.recipe import parse_value

    assert parse_value("http://host:8080/x") == "http://host:8080/x"
    assert parse_value('"r:16"') == "r:16"
    assert parse_value("{r: 16}") == {"r": 16}


def test_trl_logs_keep_non_finite_numbers_for_the_null_record():
    from rlhf_plug.progress import numeric_logs

    logs = numeric_logs({"loss": float("nan"), "grad_norm": float("inf"), "epoch": 1, "note": "x", "none": None})
    assert set(logs) == {"loss", "grad_norm", "epoch"} and logs["epoch"] == 1
