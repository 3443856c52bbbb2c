"""Two real torch.distributed processes (gloo, launched by torchrun) against one process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from graphrec.data.convert import ConvertConfig, convert


@pytest.fixture(scope="module")
def dataset_dir(shared_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "ml"
    convert("movielens", shared_data / "ml-100k", path, ConvertConfig(min_rating=4, kcore=5, split="random", seed=3))
    return path


# 43,517 training interactions: batches of 2048 leave a last batch of 511, split 255 / 256
ARGS = ["--model", "lightgcn", "--dim", "32", "--layers", "2", "--epochs", "6", "--batch-size", "2048",
        "--lr", "0.005", "--seed", "7", "--no-progress", "--eval-every", "2", "--device", "cpu", "--deterministic"]


def run(command, cwd):
    completed = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return completed


#: ModalityGAT with its content channels and item-side attention (genres as its one source)
GAT_ARGS = [*ARGS[:ARGS.index("--epochs")], "--epochs", "2", *ARGS[ARGS.index("--epochs") + 2:]]
GAT_ARGS[1] = "gat"
GAT_ARGS += ["--channels"]


@pytest.mark.parametrize("args", [ARGS, pytest.param(GAT_ARGS, marks=pytest.mark.slow)], ids=["lightgcn", "gat"])
def test_two_processes_match_one(dataset_dir, tmp_path, args):
    single = tmp_path / "single"
    double = tmp_path / "double"
    run([sys.executable, "-m", "graphrec", "train", str(dataset_dir), "--out", str(single), *args], tmp_path)
    launched = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "graphrec", "train", str(dataset_dir), "--out", str(double), *args], tmp_path)
    one = json.loads((single / "metrics.json").read_text())
    two = json.loads((double / "metrics.json").read_text())
    info = two["distributed"]
    assert info["world_size"] == 2 and info["backend"] == "gloo"
    assert len(info["rank_checksums"]) == 2 and info["identical_across_ranks"]
    assert len(set(info["rank_checksums"])) == 1
    assert one["distributed"] is None
    # only rank 0 logs: the summary line appears once
    assert launched.stdout.count("wrote ") == 1
    # the same steps on the same data, gradients averaged over the ranks: the same training, to rounding
    assert [e["loss"] for e in two["epochs"]] == pytest.approx([e["loss"] for e in one["epochs"]], rel=1e-5)
    for split in ("valid", "test"):
        assert two[split]["recall@20"] == pytest.approx(one[split]["recall@20"], abs=1e-3)
        assert two[split]["ndcg@20"] == pytest.approx(one[split]["ndcg@20"], abs=1e-3)


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    """A rank without a GPU of its own is refused before joining the process group, with the
    two ways out, instead of CUDA's "invalid device ordinal" (on a CPU machine every rank is
    such a rank)."""
    import torch

    from graphrec.errors import GraphrecError
    from graphrec.training.distributed import context_from_env

    gpus = torch.cuda.device_count()
    processes = gpus + 2  # two at least, so that the launch counts as distributed
    environment = {"WORLD_SIZE": processes, "RANK": gpus, "LOCAL_RANK": gpus, "LOCAL_WORLD_SIZE": processes}
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    needle = rf"{processes} processes on this machine but it has {gpus} GPU.*--device cpu"
    with pytest.raises(GraphrecError, match=needle):
        context_from_env(torch.device("cuda"))
