"""Recipes: ``graphrec train --config``, checked against the option dataclasses, flags over the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from graphrec.data.convert import convert
from graphrec.errors import ConfigError, DataFormatError
from graphrec.models import MODELS
from graphrec.training.recipes import load_recipe, merge_recipe, read_recipe_file

RECIPES = Path(__file__).resolve().parents[2] / "examples" / "recipes"

RECIPE = """\
model:
  name: lightgcn
  options: {dim: 8, layers: 1}
train:
  epochs: 2
  lr: 5e-3        # YAML 1.1 reads this as a string; the recipe reads a float
  eval_ks: [10, 20]
  batch_size: 4096
"""


def graphrec(*args):
    return subprocess.run([sys.executable, "-m", "graphrec", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    convert("synthetic", "-", root / "syn", reader_options={"users": 120, "items": 80})
    return root / "syn"


def test_train_reads_the_recipe_flags_override_it_and_run_json_records_the_merge(synthetic, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    printed = graphrec("train", synthetic, "--config", recipe, "--epochs", "3", "--dim", "16", "--print-config")
    assert printed.returncode == 0, printed.stderr
    merged = yaml.safe_load(printed.stdout)
    assert merged["model"] == {"name": "lightgcn", "options": {"dim": 16, "layers": 1}}
    assert merged["train"]["epochs"] == 3 and merged["train"]["lr"] == 0.005 and merged["train"]["eval_ks"] == [10, 20]
    assert merged["train"]["batch_size"] == 4096, "a flag left at its default does not override the recipe"
    assert merged["dataset"] == str(synthetic)

    out = tmp_path / "run"
    trained = graphrec("train", synthetic, "--config", recipe, "--epochs", "3", "--dim", "16", "--no-progress",
                       "--out", out)
    assert trained.returncode == 0, trained.stderr
    spec = json.loads((out / "run.json").read_text())
    assert spec["model"] == merged["model"]
    assert {**merged["train"], "progress": False} == {key: spec["train"][key] for key in merged["train"]}
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 3
    # the printed recipe is itself a recipe that gives the same configuration
    again = tmp_path / "again.yaml"
    again.write_text(printed.stdout)
    assert load_recipe(again).to_dict() == merged


@pytest.mark.parametrize(("text", "needle"), [
    ("train:\n  lrr: 0.01\n", "field 'train.lrr': unknown key (did you mean 'lr'?)"),
    ("model:\n  name: lightgcn\n  options: {dims: 8}\n",
     "field 'model.options.dims': unknown key (did you mean 'dim'?)"),
    ("trian:\n  lr: 0.01\n", "field 'trian': unknown key (did you mean 'train'?)"),
    ("model: lightgnc\n", "field 'model.name': unknown model 'lightgnc' (did you mean 'lightgcn'?)"),
    ("train:\n  epochs: 0\n", "field 'train.epochs': must be positive, got 0"),
    ("train:\n  epochs: ten\n", "field 'train.epochs': must be int, got 'ten'"),
    ("model:\n  name: lightgcn\n  options: {dim: -1}\n", "field 'model.options.dim'"),
    ("train: [1, 2\n", "not valid YAML"),
])
def test_recipe_errors_name_the_file_the_key_and_the_closest_valid_key(tmp_path, text, needle):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    completed = graphrec("train", tmp_path, "--config", recipe, "--print-config")
    assert completed.returncode == 2, completed.stderr
    assert str(recipe) in completed.stderr and needle in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_bad_flag_over_a_recipe_names_the_flag_and_toml_reads_too(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[model]\nname = "mf"\n[model.options]\ndim = 8\n[train]\nepochs = 2\nlr = 0.01\n')
    loaded = load_recipe(recipe)
    assert loaded.model.name == "mf" and loaded.model.options.dim == 8 and loaded.train.lr == 0.01
    with pytest.raises(ConfigError) as error:
        merge_recipe(read_recipe_file(recipe), recipe, train={"epochs": 0})
    assert error.value.field == "epochs", "a value from the command line is reported under its flag"
    completed = graphrec("train", tmp_path, "--config", recipe, "--model", "lightgcn", "--print-config")
    assert completed.returncode == 2 and "error: --model:" in completed.stderr
    with pytest.raises(DataFormatError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_is_valid(path):
    if path.name.startswith("space_"):
        from graphrec.training.tune import read_space_file, search_space

        assert search_space("lightgcn", read_space_file(path), path)
        return
    recipe = load_recipe(path)
    assert recipe.model.name in MODELS
