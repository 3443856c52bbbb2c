"""The CLI as a real subprocess on damaged inputs and in a hostile environment: a signal during
training, two writers at once, a full disk (a real tmpfs where this process may mount one, and a
real file size limit everywhere), FIFOs, devices and huge (sparse) files.

After every case: the exit code, a message without a traceback, and the earlier state of every
directory involved, hashed before and compared after (:func:`_cli.tree_digest`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli import assert_clean_error, file_size_limit, graphrec, mounted_tmpfs, tree_digest

from graphrec.data.convert import convert
from graphrec.models import ModelConfig
from graphrec.training.config import TrainConfig
from graphrec.training.run import train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "ds"
    convert("synthetic", "-", path, reader_options={"users": 60, "items": 40, "seed": 2}, log=None)
    return path


@pytest.fixture(scope="module")
def finished_run(dataset, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "R"
    train(dataset, ModelConfig("mf", dim=8), TrainConfig(epochs=2, progress=False, batch_size=256, eval_ks=(10, 20)),
          out=path, log=lambda _: None)
    return path


def _train_command(dataset: Path, out: Path, *extra: object) -> list[str]:
    return [sys.executable, "-m", "graphrec", "train", str(dataset), "--out", str(out), "--no-progress",
            "--batch-size", "256", *map(str, extra)]


@pytest.mark.slow
def test_sigint_during_training_exits_130_keeps_the_checkpoint_and_resume_finishes(dataset, tmp_path):
    before = tree_digest(dataset)
    run = tmp_path / "R"
    child = subprocess.Popen(_train_command(dataset, run, "--model", "mf", "--dim", "8", "--epochs", "100000",
                                            "--patience", "100000", "--eval-every", "100000"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "last.pt").is_file() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130 and "Traceback" not in stderr, stderr
    assert "interrupted: training interrupted during epoch" in stderr and "resume with --resume" in stderr
    assert tree_digest(dataset) == before
    assert sorted(p.name for p in run.iterdir()) == ["last.pt", "run.json"]  # no temporary file left behind
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # nor the lock
    # the interrupted run is resumed (its epochs lowered to where it stands, a change a resume allows)
    epochs = json.loads(subprocess.run([sys.executable, "-c", "import torch,sys; print(torch.load(sys.argv[1], "
                                        "weights_only=True)['epoch'])", str(run / "last.pt")],
                                       capture_output=True, text=True, check=True).stdout)
    resumed = graphrec("train", dataset, "--out", run, "--no-progress", "--batch-size", "256", "--model", "mf",
                       "--dim", "8", "--epochs", epochs + 1, "--patience", "100000", "--eval-every", "100000",
                       "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_two_trainings_into_one_run_directory_never_mix(dataset, tmp_path):
    run = tmp_path / "R"
    before = tree_digest(dataset)
    children = [subprocess.Popen(_train_command(dataset, run, "--model", model, "--epochs", "3"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for model in ("lightgcn", "mf")]
    outputs = [child.communicate(timeout=300) for child in children]
    codes = sorted(child.returncode for child in children)
    assert codes == [0, 2], outputs
    loser = outputs[[child.returncode for child in children].index(2)][1]
    assert "Traceback" not in loser
    assert "is being written by another graphrec process (pid" in loser or "already holds a run" in loser
    spec = json.loads((run / "run.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert spec["status"] == "finished" and spec["model"]["name"] == metrics["model_config"]["name"]
    evaluated = graphrec("evaluate", run, "--json", check=True)
    assert json.loads(evaluated.stdout)["metrics"]["recall@20"] == pytest.approx(metrics["test"]["recall@20"])
    assert tree_digest(dataset) == before


def test_two_conversions_into_one_destination_give_one_whole_dataset(tmp_path):
    children = [subprocess.Popen([sys.executable, "-m", "graphrec", "convert", "synthetic", "-", str(tmp_path / "ds"),
                                  "--users", str(users), "--items", "50"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for users in (300, 301)]
    outputs = [child.communicate(timeout=300) for child in children]
    codes = sorted(child.returncode for child in children)
    assert codes == [0, 2], outputs
    assert all("Traceback" not in err for _, err in outputs)
    info = json.loads(graphrec("info", tmp_path / "ds", "--json", check=True).stdout)
    winner = [child.returncode for child in children].index(0)
    assert info["num_users"] == (300, 301)[winner]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary directory or lock left


def test_a_full_disk_during_convert_and_train_leaves_nothing_half_written(dataset, tmp_path):
    with mounted_tmpfs(tmp_path / "small", size="96k") as small:
        completed = graphrec("convert", "synthetic", "-", small / "ds", "--users", "400", "--items", "200")
        assert_clean_error(completed, 1, "no space left on the device (the disk is full)")
        assert list(small.iterdir()) == []
        trained = graphrec("train", dataset, "--model", "mf", "--dim", "256", "--epochs", "1", "--no-progress",
                           "--out", small / "R")
        assert_clean_error(trained, 1, f"cannot write {small / 'R'}")
        assert sorted(p.name for p in (small / "R").iterdir()) == ["run.json"]
        spec = json.loads((small / "R" / "run.json").read_text())
        assert spec["status"] == "failed" and "disk is full" in spec["reason"]


def test_a_file_size_limit_during_export_leaves_the_previous_export(finished_run, tmp_path):
    out = tmp_path / "emb"
    graphrec("export-embeddings", finished_run, out, "--format", "npy", check=True)
    before, run_before = tree_digest(tmp_path), tree_digest(finished_run)
    completed = graphrec("export-embeddings", finished_run, out, "--format", "parquet", "--overwrite",
                         preexec_fn=file_size_limit(600))
    assert_clean_error(completed, 1, f"cannot write {out}: the file is larger than this file system or process allows")
    assert tree_digest(tmp_path) == before and tree_digest(finished_run) == run_before


@pytest.mark.parametrize("target", ["fifo", "device", "directory"])
def test_fifos_devices_and_directories_as_inputs_are_refused_without_blocking(dataset, finished_run, tmp_path, target):
    def special(path: Path) -> Path:
        if target == "fifo":
            os.mkfifo(path)
        elif target == "device":
            os.symlink("/dev/zero", path)
        else:
            path.mkdir()
        return path

    source = special(tmp_path / "t.csv")
    before = tree_digest(tmp_path)
    assert_clean_error(graphrec("convert", "csv", source, tmp_path / "ds", timeout=60), 2, "is not a regular file")
    assert tree_digest(tmp_path) == before
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    for name in ("model.pt", "metrics.json"):
        (run / name).unlink()
        special(run / name)
    run_before = tree_digest(run)
    completed = graphrec("evaluate", run, timeout=60)
    assert_clean_error(completed, 2, "model.pt")
    assert tree_digest(run) == run_before


def test_huge_sparse_files_are_refused_without_reading_them(dataset, finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    with open(run / "model.pt", "wb") as handle:
        handle.truncate(8 << 30)  # 8 GiB of zeros, stored sparse
    before = tree_digest(run)
    assert_clean_error(graphrec("evaluate", run, timeout=120), 2, "model.pt: is not a")
    assert tree_digest(run) == before
    source = tmp_path / "ml"
    source.mkdir()
    with open(source / "u.data", "wb") as handle:
        handle.write(b"1\t2\t3\t4\n")
        handle.truncate(1 << 20)  # a line of NUL bytes after the first: not MovieLens
    assert_clean_error(graphrec("convert", "movielens", source, tmp_path / "ds", timeout=120), 2, "u.data")
    assert not (tmp_path / "ds").exists()
