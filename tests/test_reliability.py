"""Issue 19, one test per defect (``test_defect_NN_...``): no lost runs, no silent success, no
unbounded reads, and a one-line error in place of every traceback.

Most run the CLI as a real subprocess on a small synthetic dataset and a real trained run; the
damaged inputs are real files (truncated and crafted checkpoints, FIFOs, ``/dev/zero``), and the
environments real ones (a file size limit, a read-only mount, a held lock).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _cli import assert_clean_error, file_size_limit, graphrec, read_only_directory, tree_digest

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import load_dataset
from graphrec.data.storage import directory_lock
from graphrec.errors import ConfigError, DataFormatError, GraphrecError, TrainingDiverged
from graphrec.models import ModelConfig
from graphrec.training.config import TrainConfig
from graphrec.training.run import train

FAST = {"progress": False, "batch_size": 256, "eval_ks": (10, 20)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A small synthetic dataset (60 users, 40 items, with images), converted for real."""
    path = tmp_path_factory.mktemp("data") / "ds"
    convert("synthetic", "-", path, reader_options={"users": 60, "items": 40, "seed": 1}, log=None)
    return path


@pytest.fixture(scope="module")
def finished_run(dataset, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "R"
    train(dataset, ModelConfig("mf", dim=8), TrainConfig(epochs=2, **FAST), out=path, log=lambda _: None)
    return path


def _copy_run(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def test_defect_00_usage_errors_are_handled_for_the_click_that_typer_uses():
    """Whatever click the installed typer resolves to (its vendored ``typer._click`` from 0.2x on),
    its usage errors are what the CLI catches: checked against the classes actually installed."""
    from graphrec.cli import _is_click_error

    try:
        from typer._click import exceptions  # typer 0.2x and later
    except ImportError:
        from click import exceptions
    assert _is_click_error(exceptions.NoSuchOption("--x"), "ClickException")
    assert _is_click_error(exceptions.BadParameter("x"), "ClickException")
    assert not _is_click_error(ValueError("x"), "ClickException")
    for args, needle in ((["train", "DS", "--refit-x"], "No such option: --refit-x"),
                         (["nosuchcmd"], "No such command 'nosuchcmd'")):
        assert_clean_error(graphrec(*args), 2, needle)


def test_defect_01_ctrl_c_exits_130_saying_what_was_kept(dataset, tmp_path):
    run = tmp_path / "R"
    child = subprocess.Popen([sys.executable, "-m", "graphrec", "train", dataset, "--model", "mf", "--dim", "8",
                              "--epochs", "100000", "--patience", "100000", "--eval-every", "100000",
                              "--batch-size", "256", "--no-progress", "--out", run],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "last.pt").is_file() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
    time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("interrupted: training interrupted during epoch ") and "resume with --resume" in line
    assert "last.pt holds epoch" in line
    spec = json.loads((run / "run.json").read_text())
    assert spec["status"] == "interrupted" and spec["reason"].startswith("training interrupted during epoch")
    # what was kept is a checkpoint that loads
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] >= 1


def test_defect_01_a_zero_byte_checkpoint_is_an_error_not_an_abort(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    (run / "model.pt").write_bytes(b"")
    completed = graphrec("evaluate", run)
    assert_clean_error(completed, 2, "model.pt: is not a readable graphrec model file")
    assert "aborted" not in completed.stderr.lower()


def test_defect_02_a_second_writer_is_refused_naming_the_holder(dataset, tmp_path):
    run = tmp_path / "R"
    with directory_lock(run):
        completed = graphrec("train", dataset, "--model", "mf", "--epochs", "1", "--out", run)
        assert_clean_error(completed, 2, f"is being written by another graphrec process (pid {os.getpid()}")
        blocked = graphrec("convert", "synthetic", "-", run, "--users", "20", "--items", "40")
        assert_clean_error(blocked, 2, f"pid {os.getpid()}")
    assert not run.exists()
    before = tree_digest(dataset)
    with directory_lock(dataset):
        encoding = graphrec("encode", dataset, "--modality", "image", "--model", "resnet18")
        assert_clean_error(encoding, 2, f"{dataset} is being written by another graphrec process (pid {os.getpid()}")
    assert tree_digest(dataset) == before


def test_defect_02_a_stale_lock_of_a_dead_process_is_taken_over(dataset, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".R.lock").write_text(f"pid {dead.stdout.strip()} (train), since long ago\n")
    completed = graphrec("train", dataset, "--model", "mf", "--dim", "8", "--epochs", "1", "--no-progress",
                         "--out", tmp_path / "R")
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "R" / "metrics.json").is_file() and not (tmp_path / ".R.lock").exists()


@pytest.mark.slow
def test_defect_03_no_output_replaces_the_run_it_reads(finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    before = tree_digest(tmp_path)
    for args in (["export-embeddings", run, run, "--overwrite"], ["export-embeddings", run, tmp_path, "--overwrite"],
                 ["index", run, "--out", run, "--overwrite"], ["index", run, "--out", tmp_path, "--overwrite"]):
        assert_clean_error(graphrec(*args), 2, "which this command reads; choose another output directory")
    assert tree_digest(tmp_path) == before


def test_defect_04_overwrite_replaces_only_what_graphrec_wrote(tmp_path):
    mine = tmp_path / "x"
    mine.mkdir()
    (mine / "notes.txt").write_text("a\n")
    before = tree_digest(tmp_path)
    completed = graphrec("convert", "synthetic", "-", mine, "--overwrite", "--users", "20", "--items", "40")
    assert_clean_error(completed, 2, "is not a directory graphrec wrote")
    assert tree_digest(tmp_path) == before
    # a dataset graphrec wrote is replaced, as asked
    graphrec("convert", "synthetic", "-", tmp_path / "ds", "--users", "20", "--items", "40", check=True)
    graphrec("convert", "synthetic", "-", tmp_path / "ds", "--users", "30", "--items", "40", "--overwrite",
             check=True)
    assert load_dataset(tmp_path / "ds").num_users == 30


@pytest.mark.slow
def test_defect_05_train_refuses_to_replace_a_finished_run(dataset, finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    before = tree_digest(run)
    completed = graphrec("train", dataset, "--model", "lightgcn", "--epochs", "1", "--out", run)
    assert_clean_error(completed, 2, "already holds a run; resume it, or pass --overwrite")
    assert tree_digest(run) == before
    replaced = graphrec("train", dataset, "--model", "mf", "--dim", "4", "--epochs", "1", "--no-progress",
                        "--out", run, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((run / "run.json").read_text())["model"]["options"]["dim"] == 4
    fresh = graphrec("train", dataset, "--model", "mf", "--dim", "4", "--epochs", "1", "--no-progress",
                     "--out", tmp_path / "new", "--resume")
    assert fresh.returncode == 0 and "holds no run to resume; training starts from scratch" in fresh.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["--model", "lightgcn", "--layers", "2", "--sampling", "neighbor", "--fanout", "5"],
     "samples 1 hop(s) but the model propagates over 2 layers"),
    (["--model", "mf", "--sampling", "neighbor"], "does not train on sampled subgraphs"),
    (["--model", "mf", "--lr", "nan"], "error: --lr: must be a finite number"),
])
def test_defect_06_what_can_be_checked_is_checked_before_the_run_directory_exists(dataset, tmp_path, args, needle):
    completed = graphrec("train", dataset, *args, "--epochs", "1", "--out", tmp_path / "R")
    assert_clean_error(completed, 2, needle)
    assert not (tmp_path / "R").exists()


def test_defect_06_a_run_that_fails_later_is_marked_failed_and_evaluate_says_so(dataset, finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    # weights so large that the next epoch's scores overflow: training diverges after epoch 2
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    checkpoint["model"] = {name: value * 1e30 for name, value in checkpoint["model"].items()}
    torch.save(checkpoint, run / "last.pt")
    with pytest.raises(TrainingDiverged, match=r"epoch 3: the training loss became (nan|inf) at step \d+"):
        train(dataset, ModelConfig("mf", dim=8), TrainConfig(epochs=4, **FAST), out=run, resume=True,
              log=lambda _: None)
    spec = json.loads((run / "run.json").read_text())
    assert spec["status"] == "failed" and "lower the learning rate" in spec["reason"]
    completed = graphrec("evaluate", run)
    assert_clean_error(completed, 2, f"run {run} failed: epoch 3: the training loss became")


def test_defect_07_non_finite_features_are_refused_when_a_dataset_loads(dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    loaded = load_dataset(copy)
    from graphrec.data.dataset import ModalityFeatures

    values = np.ones((loaded.num_items, 4), np.float32)
    loaded.with_features(ModalityFeatures("text", values, np.ones(loaded.num_items, bool))).save(copy, overwrite=True)
    values[7, 2] = np.nan
    np.save(copy / "features" / "text.npy", values)
    expected = "modality 'text' holds nan at item 7 (id 'item_00007'), column 2"
    with pytest.raises(DataFormatError, match=r"modality 'text' holds nan at item 7 \(id 'item_00007'\), column 2"):
        load_dataset(copy)
    assert_clean_error(graphrec("info", copy), 2, expected)
    completed = graphrec("train", copy, "--model", "lightgcn", "--epochs", "1", "--out", tmp_path / "R")
    assert_clean_error(completed, 2, expected)
    assert not (tmp_path / "R").exists()


@pytest.mark.parametrize("field", ["lr", "reg", "contrastive_weight", "max_minutes", "lr_decay_factor"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_defect_08_non_finite_options_are_refused(field, value):
    with pytest.raises(ConfigError, match="must be a finite number") as raised:
        TrainConfig(**{field: value})
    assert raised.value.field == field
    with pytest.raises(ConfigError) as raised:  # -inf fails the model's own range check first
        ModelConfig("bspm", T_b=value)
    assert raised.value.field == "T_b"
    with pytest.raises(ConfigError, match="must be a finite number"):
        ConvertConfig(min_rating=value)


def test_defect_08_a_diverging_loss_stops_at_once_and_keeps_the_last_good_checkpoint(dataset, finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    checkpoint["model"] = {name: value * 1e30 for name, value in checkpoint["model"].items()}
    torch.save(checkpoint, run / "last.pt")
    good = (run / "last.pt").read_bytes()
    with pytest.raises(TrainingDiverged) as raised:
        train(dataset, ModelConfig("mf", dim=8), TrainConfig(epochs=50, **FAST), out=run, resume=True,
              log=lambda _: None)
    message = str(raised.value)
    assert message.startswith("epoch 3: ") and f"{run / 'last.pt'} holds epoch 2" in message
    assert "lower the learning rate (it is 0.001)" in message
    assert (run / "last.pt").read_bytes() == good  # the diverged epoch was not saved over it
    assert not (run / "metrics.json").exists() or json.loads((run / "run.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("value", ["[1.5]", "[true]", "[null]", "[[1]]", "[{\"a\": 1}]", "[1, \"a\"]", "[1e400]"])
@pytest.mark.parametrize("with_map", [False, True])
def test_defect_09_json_split_values_of_the_wrong_type_are_data_format_errors(tmp_path, value, with_map):
    (tmp_path / "train.json").write_text('{"0": [0, 1], "1": [1]}')
    (tmp_path / "val.json").write_text('{"0": ' + value + "}")
    (tmp_path / "test.json").write_text('{"1": [0]}')
    if with_map:
        (tmp_path / "item2id.json").write_text('{"a": 0, "b": 1}')
    from graphrec.data.formats import get_reader

    with pytest.raises(DataFormatError) as raised:
        get_reader("json-split")(tmp_path)
    assert raised.value.path == str(tmp_path / "val.json") and raised.value.field == "0"


def test_defect_10_ids_are_kept_exactly_as_written(tmp_path):
    source = tmp_path / "t.csv"
    source.write_text('user,item\na,i1\n" a",i1\n"a ",i2\n a ,i2\nb,i1\n')
    result = convert("csv", source, tmp_path / "ds", log=None)
    assert sorted(result.dataset.users["user_id"]) == [" a", " a ", "a", "a ", "b"]
    assert sorted(load_dataset(tmp_path / "ds").users["user_id"]) == [" a", " a ", "a", "a ", "b"]
    (tmp_path / "blank.csv").write_text("user,item\n   ,i1\n")
    with pytest.raises(DataFormatError, match="user id is missing"):
        convert("csv", tmp_path / "blank.csv", tmp_path / "ds2", log=None)


def _with_images(dataset: Path, tmp_path: Path, images: dict[int, str]) -> Path:
    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    items = pd.read_parquet(copy / "items.parquet")
    for position, value in images.items():
        items.loc[position, "image"] = value
    items.to_parquet(copy / "items.parquet", index=False)
    return copy


def test_defect_11_image_reads_are_bounded_and_kept_inside_the_dataset(dataset, tmp_path):
    (tmp_path / "outside.png").write_bytes((dataset / "images" / "item_00000.png").read_bytes())
    copy = _with_images(dataset, tmp_path, {0: "/dev/zero", 1: "images/fifo.png", 2: "images/../../outside.png",
                                            3: str(dataset / "images" / "item_00003.png"), 4: "images/huge.png"})
    os.mkfifo(copy / "images" / "fifo.png")
    with open(copy / "images" / "huge.png", "wb") as handle:
        handle.truncate(3 << 20)  # a sparse 3 MiB file, over the 2 MiB cap below
    completed = graphrec("encode", copy, "--modality", "image", "--model", "resnet18", "--batch-size", "8",
                         "--max-image-mb", "2", timeout=240)
    assert completed.returncode == 0, completed.stderr
    log = completed.stdout
    assert "item 0 (id 'item_00000'): image /dev/zero cannot be read" in log and "not a regular file" in log
    assert "item 1 (id 'item_00001')" in log and "fifo.png cannot be read" in log
    assert "item 2 (id 'item_00002')" in log and "is outside the dataset folder" in log
    assert "item 4 (id 'item_00004')" in log and "over the limit of 2,097,152" in log
    assert "2 items name their image by an absolute path" in log and "(first: item 0 (id 'item_00000')" in log
    features = load_dataset(copy).features["image"]
    assert not features.mask[[0, 1, 2, 4]].any() and features.mask[3] and features.mask[5:].all()
    encoder = json.loads((copy / "manifest.json").read_text())["modalities"]["image"]["encoder"]
    assert encoder["run"]["absolute_paths"] == 2
    assert any("item 3 (id 'item_00003')" in entry for entry in encoder["run"]["absolute_path_items"])


def test_defect_12_an_unterminated_last_line_is_reported_with_its_number(tmp_path):
    source = tmp_path / "ml"
    source.mkdir()
    (source / "u.data").write_bytes(b"1\t10\t4\t881250949\n2\t10\t3\t881250950\n2\t11\t5\t87")
    completed = graphrec("convert", "movielens", source, tmp_path / "ds")
    assert completed.returncode == 0, completed.stderr
    assert (f"{source / 'u.data'}: line 3: the file does not end with a line break, so this last line may have "
            f"been cut short") in completed.stdout
    assert any("line 3" in note for note in load_dataset(tmp_path / "ds").manifest["notes"])


def test_defect_13_text_is_read_as_utf8_first_and_a_latin1_fallback_is_reported(tmp_path):
    for encoding in ("utf-8", "latin-1"):
        source = tmp_path / encoding
        source.mkdir()
        (source / "u.data").write_bytes(b"1\t10\t4\t881250949\n2\t11\t3\t881250950\n")
        (source / "u.item").write_bytes("10|Amélie (2001)|01-Jan-2001||x|1\n11|Léon (1994)|01-Jan-1994||x|1\n"
                                        .encode(encoding))
        (source / "u.genre").write_bytes(b"unknown|0\n")
        completed = graphrec("convert", "movielens", source, tmp_path / f"ds-{encoding}")
        assert completed.returncode == 0, completed.stderr
        titles = load_dataset(tmp_path / f"ds-{encoding}").items["title"].tolist()
        assert titles == ["Amélie (2001)", "Léon (1994)"]
        fallback = "u.item: not valid utf-8 text (byte 0xe9 at line 1); read as latin-1"
        assert (fallback in completed.stdout) == (encoding == "latin-1")


def _crafted_pickle(marker: Path) -> bytes:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    return pickle.dumps({"model": Payload()})


@pytest.mark.parametrize("damage", ["truncated", "garbage", "code"])
def test_defect_14_damaged_or_crafted_checkpoints_are_clear_errors(dataset, finished_run, tmp_path, damage):
    run = _copy_run(finished_run, tmp_path)
    marker = tmp_path / "executed"
    for name in ("model.pt", "last.pt"):
        data = (run / name).read_bytes()
        (run / name).write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(4096),
                                  "code": _crafted_pickle(marker)}[damage])
    needle = {"code": "it is a pickle of Python objects beyond tensors (it may carry code); it was opened with "
                      "weights_only=True, so nothing in it was executed",
              "truncated": "model.pt: is not a readable graphrec model file (truncated or damaged",
              "garbage": "model.pt: is not a graphrec model file (damaged, or another kind of file"}[damage]
    assert_clean_error(graphrec("evaluate", run), 2, needle)
    resumed = graphrec("train", dataset, "--model", "mf", "--dim", "8", "--epochs", "3", "--batch-size", "256",
                       "--ks", "10,20", "--no-progress", "--out", run, "--resume")
    assert_clean_error(resumed, 2, "last.pt: is not a")
    assert not marker.exists()


@pytest.mark.slow
def test_defect_14_write_failures_are_one_line_errors_and_leave_things_as_they_were(dataset, tmp_path):
    (tmp_path / "file").write_text("not a directory\n")
    before = tree_digest(tmp_path)
    assert_clean_error(graphrec("train", dataset, "--model", "mf", "--epochs", "1", "--out", tmp_path / "file"),
                       2, "exists and is not a directory")
    # a file size limit (a full quota): the write fails with EFBIG, in convert and in train
    full = graphrec("convert", "synthetic", "-", tmp_path / "ds", "--users", "200", "--items", "100",
                    preexec_fn=file_size_limit(20_000))
    assert_clean_error(full, 1, "the file is larger than this file system or process allows")
    train_full = graphrec("train", dataset, "--model", "mf", "--dim", "64", "--epochs", "1", "--no-progress",
                          "--out", tmp_path / "R", preexec_fn=file_size_limit(20_000))
    assert_clean_error(train_full, 1, "cannot write")
    assert json.loads((tmp_path / "R" / "run.json").read_text())["status"] == "failed"
    shutil.rmtree(tmp_path / "R")
    assert tree_digest(tmp_path) == before
    with read_only_directory(tmp_path / "ro") as read_only:
        completed = graphrec("train", dataset, "--model", "mf", "--epochs", "1", "--out", read_only / "R")
        assert_clean_error(completed, 1, f"cannot create {read_only / 'R'}")
        converted = graphrec("convert", "synthetic", "-", read_only / "ds")
        assert_clean_error(converted, 1, f"cannot create {read_only / 'ds'}")


@pytest.mark.slow
def test_defect_15_small_items(dataset, finished_run, tmp_path):
    from graphrec.data.formats import get_reader
    from graphrec.models import build_model
    from graphrec.training.trainer import check_trainable

    # no validation split: what to do, not an internal function's name
    loaded = load_dataset(dataset)
    inter = loaded.interactions.copy()
    inter["split"] = inter["split"].where(inter["split"] != "valid", "train")
    no_valid = type(loaded)(name="nv", interactions=inter, items=loaded.items, users=loaded.users)
    with pytest.raises(GraphrecError) as raised:
        check_trainable(build_model(ModelConfig("mf", dim=8), no_valid), no_valid, TrainConfig())
    assert "ensure_validation_split" not in str(raised.value) and "convert it again with a split" in str(raised.value)
    # a 30-digit id is out of range, not "not an integer"
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "u.data").write_text("1\t2\t3\t4\n" + "1" * 30 + "\t2\t3\t4\n")
    with pytest.raises(DataFormatError, match="is out of range"):
        get_reader("movielens")(tmp_path / "ml")
    # a separator of two characters is unsupported, not a missing column
    (tmp_path / "t.csv").write_text("user;;item\na;;b\n")
    assert_clean_error(graphrec("convert", "csv", tmp_path / "t.csv", tmp_path / "d", "--sep", ";;"), 2,
                       "error: --sep: separator ';;' is not supported")
    # recommend escapes ids, notes a short list, and prints no FutureWarning
    rng = np.random.default_rng(0)
    users = ["u\nforged", "u\tb", "u\rc", *(f"u{i}" for i in range(27))]
    pairs = [(user, item) for user in users for item in rng.choice(["x\ny", *"pqrstuvwxyz"], size=8, replace=False)]
    ids = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    ids.to_parquet(tmp_path / "t.parquet", index=False)
    graphrec("convert", "parquet", tmp_path / "t.parquet", tmp_path / "pq", "--split", "random", "--ratios",
             "0.6,0.2,0.2", check=True)
    graphrec("train", tmp_path / "pq", "--model", "pop", "--out", tmp_path / "pr", "--ks", "1,2", "--metric",
             "recall@2", check=True)
    shown = graphrec("recommend", tmp_path / "pr", "--user", "u\nforged", "-k", "5000", check=True)
    assert "user u\\nforged" in shown.stdout and "\nforged" not in shown.stdout
    assert "fewer than -k 5000: all are listed" in shown.stderr
    assert "x\\ny" in shown.stdout or "x\ny" not in shown.stdout
    assert "FutureWarning" not in shown.stderr + graphrec("evaluate", finished_run).stderr
