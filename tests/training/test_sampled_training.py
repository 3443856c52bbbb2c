"""Neighbour-sampled mini-batch training: exact with unlimited fan-out, learns with a small one."""

from __future__ import annotations

import pytest
import torch

from graphrec.data.convert import ConvertConfig, convert
from graphrec.errors import GraphrecError
from graphrec.training.run import ModelConfig, TrainConfig, train

FAST = dict(batch_size=4096, lr=5e-3, progress=False, eval_ks=(10, 20), deterministic=True)


@pytest.fixture(scope="module")
def movielens(shared_data, tmp_path_factory):
    return convert("movielens", shared_data / "ml-100k", tmp_path_factory.mktemp("d") / "ml",
                   ConvertConfig(min_rating=3, split="random", seed=2)).dataset


def test_unlimited_fanout_trains_exactly_like_full_graph(movielens):
    model = ModelConfig("lightgcn", dim=16, layers=2)
    full = train(movielens, model, TrainConfig(epochs=2, **FAST), log=lambda _: None)
    sampled = train(movielens, model, TrainConfig(epochs=2, sampling="neighbor", fanout=(-1, -1), **FAST),
                    log=lambda _: None)
    assert sampled.metrics["sampling"] == "neighbor" and full.metrics["sampling"] == "full"
    for a, b in zip(full.metrics["epochs"], sampled.metrics["epochs"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(sampled.model.state_dict()[key], value, rtol=1e-4, atol=1e-6)


def test_small_fanout_still_learns(movielens):
    pop = train(movielens, ModelConfig("pop"), TrainConfig(epochs=1, **FAST), log=lambda _: None)
    sampled = train(movielens, ModelConfig("lightgcn", dim=32, layers=2),
                    TrainConfig(epochs=15, sampling="neighbor", fanout=(5, 5), **FAST), log=lambda _: None)
    losses = [e["loss"] for e in sampled.metrics["epochs"]]
    assert losses[-1] < losses[0]
    assert sampled.metrics["test"]["recall@20"] > pop.metrics["test"]["recall@20"]


def test_auto_picks_full_graph_when_it_fits_and_says_so(movielens):
    lines = []
    run = train(movielens, ModelConfig("lightgcn", dim=8, layers=1), TrainConfig(epochs=1, sampling="auto", **FAST),
                log=lines.append)
    assert run.metrics["sampling"] == "full"
    assert any("sampling auto" in line and "chose full" in line for line in lines)


def test_models_without_subgraph_support_refuse_neighbor_sampling(movielens):
    with pytest.raises((ValueError, GraphrecError), match="sampled subgraphs"):
        train(movielens, ModelConfig("mf", dim=8), TrainConfig(epochs=1, sampling="neighbor", **FAST),
              log=lambda _: None)
