"""The command line, run as a real subprocess: exit codes, JSON output, error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def graphrec(*args, check=True, env=None):
    completed = subprocess.run([sys.executable, "-m", "graphrec", *map(str, args)], capture_output=True, text=True,
                               env=env)
    if check and completed.returncode != 0:
        raise AssertionError(f"graphrec {args} failed ({completed.returncode}):\n{completed.stderr}")
    return completed


def test_convert_info_export(shared_data, tmp_path):
    dst = tmp_path / "ml"
    out = graphrec("convert", "movielens", shared_data / "ml-100k", dst, "--min-rating", "3", "--kcore", "5",
                   "--split", "random", "--ratios", "0.8,0.1,0.1", "--seed", "4").stdout
    assert "users" in out and "kcore" in out and "min_rating" in out
    info = json.loads(graphrec("info", dst, "--json").stdout)
    assert set(info) >= {"num_users", "num_items", "num_interactions", "splits", "modalities"}
    assert sum(info["splits"].values()) == info["num_interactions"]
    assert info["modalities"] == []
    text = graphrec("info", dst).stdout
    assert "filtered     nothing" not in text and "min_rating: removed 17,480" in text and "kcore" in text
    graphrec("export", dst, tmp_path / "rb", "--format", "recbole")
    assert (tmp_path / "rb" / "ml.train.inter").is_file()


def test_existing_destination_is_refused(shared_data, tmp_path):
    dst = tmp_path / "ml"
    graphrec("convert", "movielens", shared_data / "ml-100k", dst)
    again = graphrec("convert", "movielens", shared_data / "ml-100k", dst, check=False)
    assert again.returncode != 0 and "--overwrite" in again.stderr


@pytest.mark.parametrize("content, needle", [
    ("1\t2\t3\t881250949\n1\tfoo\t3\t881250949\n", "line 2"),
    ("1,2,3,881250949\n", "line 1"),
])
def test_bad_input_names_file_line_and_field(tmp_path, content, needle):
    src = tmp_path / "ml"
    src.mkdir()
    (src / "u.data").write_text(content)
    result = graphrec("convert", "movielens", src, tmp_path / "out", check=False)
    assert result.returncode != 0
    assert "u.data" in result.stderr and needle in result.stderr and "field" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_format_and_missing_source(tmp_path):
    result = graphrec("convert", "nosuch", tmp_path, tmp_path / "o", check=False)
    assert result.returncode != 0 and "unknown format" in result.stderr
    result = graphrec("convert", "lightgcn", tmp_path / "missing", tmp_path / "o", check=False)
    assert result.returncode != 0 and "missing" in result.stderr


def _tiny_csv(path, text="user,item\nu1,i1\nu1,i2\nu2,i1\n"):
    path.write_text(text)
    return path


@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / "interactions.parquet").unlink(), "interactions.parquet: required file of the dataset is missing"),
    (lambda d: (d / "users.parquet").write_bytes(b"PAR1 not really"), "users.parquet: is not a readable Parquet"),
    (lambda d: (d / "manifest.json").write_text("{}"), "schema version"),
])
def test_a_damaged_dataset_gets_a_clear_error(tmp_path, damage, needle):
    graphrec("convert", "csv", _tiny_csv(tmp_path / "t.csv"), tmp_path / "ds")
    damage(tmp_path / "ds")
    for command in (["info"], ["export", "--format", "recbole"]):
        args = [command[0], tmp_path / "ds", *([tmp_path / "exp"] if command[0] == "export" else []), *command[1:]]
        result = graphrec(*args, check=False)
        assert result.returncode != 0 and needle in result.stderr and "Traceback" not in result.stderr


def test_reader_options_are_typed_by_the_reader_and_output_paths_checked(tmp_path):
    src = _tiny_csv(tmp_path / "t.csv", "user;item\nu1;i1\nu1;i2\nu2;i1\n")
    graphrec("convert", "csv", src, tmp_path / "a", "-o", "sep=;")
    bad = graphrec("convert", "synthetic", "-", tmp_path / "s", "-o", "image_size=big", check=False)
    assert bad.returncode != 0 and "option image_size of format 'synthetic' takes an integer" in bad.stderr
    blocked = graphrec("convert", "csv", src, src / "inside", "-o", "sep=;", check=False)
    assert blocked.returncode != 0 and "cannot create" in blocked.stderr and "Traceback" not in blocked.stderr
    tab = _tiny_csv(tmp_path / "tab.csv", "user\titem\nu1\ti1\nu2\ti1\n")
    assert graphrec("convert", "csv", tab, tmp_path / "b", "--sep", "\\t").returncode == 0
    hint = graphrec("convert", "csv", tab, tmp_path / "c", check=False)
    assert "--columns user=COLUMN" in hint.stderr and "(--sep)" in hint.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["train", "data", "--reft", "--out", "R"], "No such option: --reft (Possible options: "),
    (["train"], "Missing argument 'dataset'"),
    (["train", "data", "--epochs", "abc"], "Invalid value for '--epochs'"),
    (["nosuchcmd"], "No such command 'nosuchcmd'"),
])
def test_usage_errors_exit_2_with_a_message_and_no_traceback(args, needle):
    """Whatever click the installed typer uses (its own vendored copy from typer 0.2x on)."""
    completed = graphrec(*args, check=False)
    assert completed.returncode == 2, completed.stderr
    assert needle in completed.stderr
    if "--reft" in args:  # the closest options are suggested
        assert "--refit" in completed.stderr.split("Possible options:")[1]
    assert "Traceback" not in completed.stderr + completed.stdout


def test_every_registered_model_option_is_a_train_flag():
    """The CLI's model options come from the registry's option dataclasses, not a hand-kept list."""
    import dataclasses

    from graphrec.models import MODELS

    help_text = graphrec("train", "--help", env={**os.environ, "COLUMNS": "400"}).stdout
    for name, model in MODELS.items():
        assert name in help_text
        for option in dataclasses.fields(model.Options):
            assert "--" + option.name.replace("_", "-") in help_text


def test_config_errors_name_the_flag(tmp_path):
    for args, needle in ((["--model", "pop", "--dim", "8"], "error: --dim: model 'pop' has no option 'dim'"),
                         (["--epochs", "0"], "error: --epochs: must be positive, got 0"),
                         (["--metric", "foo@20"], "error: --metric: 'foo@20' must be METRIC@K"),
                         (["--model", "lightgn"],
                          "error: --model: unknown model 'lightgn' (did you mean 'lightgcn'?)")):
        completed = graphrec("train", tmp_path, *args, check=False)
        assert completed.returncode == 2 and needle in completed.stderr, completed.stderr
        assert "Traceback" not in completed.stderr
