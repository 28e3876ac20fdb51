"""Experiment tracking: the recipe's ``report_to`` for every stage (TRL's report_to; accelerate's trackers for PPO)."""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

import pytest
from helpers import assert_one_line_error, cli, read_jsonl, write_recipe
from rich.console import Console

from rlhf_plug.errors import UserError
from rlhf_plug.recipe import load_recipe
from rlhf_plug.runner import check_recipe, make_contexts, run_recipe

RECIPE = """
name: tracked
model: {model}
output_dir: {out}
quantization: none
report_to: {report_to}
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}, limit: 32, eval_fraction: 0.25}}
      lora: {{r: 4, lora_alpha: 8}}
      args: {{max_steps: 4, per_device_train_batch_size: 4, max_length: 64}}
  - reward:
      data: {{use: builtin, with: {{name: rankings}}, limit: 12}}
      lora: {{r: 4, lora_alpha: 8}}
      evaluators: []
      args: {{max_steps: 4, per_device_train_batch_size: 4, max_length: 96}}
  - ppo:
      prompts: {{use: builtin, with: {{name: prompts}}, eval_fraction: 0.1}}
      kl: {{use: fixed, with: {{init: 0.01}}}}
      generation: {{max_new_tokens: 2}}
      lora: {{r: 4, lora_alpha: 8}}
      evaluators: [{{use: samples, with: {{rows: 2}}}}]
      args: {{steps: 3, batch_size: 2, eval_prompts: 2}}
"""


def write(tmp_path: Path, model: Path, report_to: str = "tensorboard") -> Path:
    return write_recipe(tmp_path / "recipe.yaml", RECIPE.format(model=model, out=tmp_path / "runs", report_to=report_to))


def event_data(folder: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[str]]]:
    """Every scalar tag's (step, value) pairs, and every text summary, in the event files under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    scalars: dict[str, list[tuple[int, float]]] = {}
    texts: dict[str, list[str]] = {}
    for path in sorted({p.parent for p in folder.rglob("events.out.tfevents.*")}):  # a run: a folder's event files
        events = EventAccumulator(str(path))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
        for tag in events.Tags()["tensors"]:
            for e in events.Tensors(tag):
                value = tensor_util.make_ndarray(e.tensor_proto).flatten()
                texts.setdefault(tag, []).extend(v.decode() for v in value)
    return scalars, texts


def test_tensorboard_event_files_for_sft_reward_and_ppo(tmp_path, tiny_model, registries, pm, one_thread):
    loaded = load_recipe(write(tmp_path, tiny_model), registries)
    run_recipe(loaded, registries, pm, Console(file=io.StringIO(), width=200))
    run = tmp_path / "runs" / "tracked"

    def steps(scalars, tag):
        return [step for step, _ in scalars.get(tag, [])]

    def logged(stage, key):  # what metrics.jsonl holds for the same steps
        rows = read_jsonl(run / stage / "metrics.jsonl")
        return [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in rows if r["split"] == "train" and key in r]

    sft, _ = event_data(run / "sft" / "logs")
    assert steps(sft, "train/loss") == [1, 2, 3, 4], sorted(sft)
    assert sft["train/loss"] == logged("sft", "loss")
    assert "eval/loss" in sft

    reward, _ = event_data(run / "reward" / "logs")
    assert steps(reward, "train/loss") == [1, 2, 3, 4], sorted(reward)
    assert reward["train/loss"] == logged("reward", "loss")
    assert "train/accuracy" in reward

    ppo, texts = event_data(run / "ppo" / "logs")
    for key in ("reward", "kl", "pg_loss", "reward/learned_rm"):
        assert steps(ppo, f"train/{key}") == [1, 2, 3], (key, sorted(ppo))
        assert ppo[f"train/{key}"] == logged("ppo", key)
    samples = texts["samples/text_summary"]
    assert len(samples) == 2, "the held-out samples before and after training"
    assert samples[0].startswith("| prompt | reference | policy |") and samples[0].count("\n") == 3  # header, rule, 2 rows

    assert not list(tmp_path.glob("**/trainer/runs")), "TRL's default logging folder is not used"
    assert not (Path.cwd() / "runs" / "tracked").exists()


def test_a_resumed_loop_hides_the_steps_logged_after_its_checkpoint(tmp_path):
    from types import SimpleNamespace

    from accelerate import Accelerator

    from rlhf_plug.tracking import accelerator_kwargs, finish_trackers, start_trackers
    from rlhf_plug_plugins.ppo.config import PPOStageConfig

    config = PPOStageConfig(prompts={"use": "builtin"}, report_to="tensorboard")
    ctx = SimpleNamespace(recipe=SimpleNamespace(name="r", report_to="none"), name="ppo", kind="ppo", seed=1,
                          config=config, output_dir=tmp_path, is_main_process=True)
    for resumed_at, steps in ((0, range(1, 6)), (2, range(3, 5))):  # killed after step 5, checkpoint at 2
        accelerator = Accelerator(cpu=True, **accelerator_kwargs(ctx))
        start_trackers(accelerator, ctx, resumed_at=resumed_at)
        for step in steps:
            accelerator.log({"train/reward": float(step + resumed_at)}, step=step)
        finish_trackers(accelerator)
    scalars, _ = event_data(tmp_path / "logs")
    assert [step for step, _ in scalars["train/reward"]] == [1, 2, 3, 4]


def test_report_to_none_writes_no_logs(tmp_path, tiny_model, registries, pm, one_thread):
    body = RECIPE.format(model=tiny_model, out=tmp_path / "runs", report_to="none")
    loaded = load_recipe(write_recipe(tmp_path / "recipe.yaml", body), registries, ["sft.args.max_steps=1"])
    loaded.stages = loaded.stages[:1]
    run_recipe(loaded, registries, pm, Console(file=io.StringIO(), width=200))
    run = tmp_path / "runs" / "tracked" / "sft"
    assert (run / "results.json").is_file() and not (run / "logs").exists()


def contexts(tmp_path, model, registries, pm, overrides=()):
    loaded = load_recipe(write(tmp_path, model, "none"), registries, list(overrides))
    return {ctx.name: ctx for ctx in make_contexts(loaded, registries, pm, Console(file=io.StringIO()))}


def test_a_stage_report_to_overrides_the_recipe(tmp_path, tiny_model, registries, pm):
    from rlhf_plug.tracking import requested

    found = contexts(tmp_path, tiny_model, registries, pm, ["report_to=[tensorboard]", "reward.report_to=none"])
    assert [requested(found[name]) for name in ("sft", "reward", "ppo")] == [["tensorboard"], [], ["tensorboard"]]


def test_trl_stages_get_report_to_and_run_names(tmp_path, tiny_model, registries, pm):
    from trl import SFTConfig

    from rlhf_plug.training import trainer_config

    ctx = contexts(tmp_path, tiny_model, registries, pm, ["report_to=tensorboard"])["sft"]
    config = trainer_config(SFTConfig, ctx)
    assert config.report_to == ["tensorboard"] and config.run_name == "tracked/sft" and config.project == "tracked"
    ctx = contexts(tmp_path, tiny_model, registries, pm, ["report_to=tensorboard", "sft.report_to=none"])["sft"]
    assert trainer_config(SFTConfig, ctx).report_to == []


def check_error(tmp_path, model, registries, pm, *overrides) -> str:
    loaded = load_recipe(write(tmp_path, model, "none"), registries, list(overrides))
    with pytest.raises(UserError) as caught:
        check_recipe(loaded, registries, pm, Console(file=io.StringIO()))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unknown_tracker_names_the_key_with_did_you_mean(tmp_path, tiny_model, registries, pm):
    message = check_error(tmp_path, tiny_model, registries, pm, "report_to=tensorbord")
    assert "report_to: unknown tracker 'tensorbord' (did you mean 'tensorboard'?)" in message
    message = check_error(tmp_path, tiny_model, registries, pm, "reward.report_to=[none, wnadb]")
    assert "stages[1].reward.report_to: unknown tracker 'wnadb' (did you mean 'wandb'?)" in message


def test_ppo_refuses_a_tracker_accelerate_does_not_have(tmp_path, tiny_model, registries, pm):
    message = check_error(tmp_path, tiny_model, registries, pm, "ppo.report_to=codecarbon")
    assert "stages[2].ppo.report_to: unknown tracker 'codecarbon'" in message and "accelerate" in message


def test_trackers_are_set_on_the_stage_not_in_args(tmp_path, tiny_model, registries, pm):
    message = check_error(tmp_path, tiny_model, registries, pm, "sft.args.report_to=tensorboard")
    assert "stages[0].sft.args.report_to: set trackers with the stage's `report_to:`" in message
    with pytest.raises(UserError, match=r"stages\[2\]\.ppo\.args\.report_to: unknown key 'report_to' "
                       r"\(did you mean 'stages\[2\]\.ppo\.report_to'\?\)"):
        load_recipe(write(tmp_path, tiny_model, "none"), registries, ["ppo.args.report_to=tensorboard"])


def test_tensorboard_missing_names_the_extra(tmp_path, tiny_model, registries, pm, monkeypatch):
    from transformers.integrations import integration_utils

    monkeypatch.setattr(integration_utils, "get_available_reporting_integrations", lambda: [])
    message = check_error(tmp_path, tiny_model, registries, pm, "report_to=tensorboard")
    assert message.endswith('report_to: tensorboard needs the tensorboard package: pip install "rlhf-plug[tracking]"')


def test_tracker_environment_is_the_users_or_this_stages(monkeypatch):
    from rlhf_plug.tracking import set_tracker_env

    monkeypatch.delenv("WANDB_DIR", raising=False)
    set_tracker_env("WANDB_DIR", "runs/a/.sft.partial/logs")
    set_tracker_env("WANDB_DIR", "runs/a/.reward.partial/logs")
    assert os.environ["WANDB_DIR"] == "runs/a/.reward.partial/logs", "a later stage replaces ours"
    monkeypatch.setenv("WANDB_DIR", "/data/wandb")
    set_tracker_env("WANDB_DIR", "runs/a/.ppo.partial/logs")
    assert os.environ["WANDB_DIR"] == "/data/wandb", "the user's setting wins"


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="needs a machine without wandb")
def test_a_missing_tracker_package_fails_validate_in_one_line(tmp_path, tiny_model):
    recipe = write(tmp_path, tiny_model, "wandb")
    proc = cli("validate", str(recipe))
    line = assert_one_line_error(proc, "report_to: wandb needs the wandb package: pip install wandb")
    assert line.startswith(f"error: {recipe}:6: ")
    assert not (tmp_path / "runs").exists()
