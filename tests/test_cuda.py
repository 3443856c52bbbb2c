"""The CUDA code paths give what the CPU gives: training (full-graph and sampled, with the sampling on
the CPU or the GPU), lazy Adam, evaluation, encoders.

Every test compares a CUDA run with the same run on the CPU (sampling on the GPU: with sampling on
the CPU, and a resumed run with an uninterrupted one), so they need a GPU; on a machine without one
they are skipped (the CPU side of each is covered by the rest of the suite). The
data is graphrec's own synthetic set, the text model a randomly initialised BERT saved locally
(no download), the image model a randomly initialised ResNet-18.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from graphrec.data.convert import convert
from graphrec.encoders.image import ImageEncoder, ImageEncoderConfig
from graphrec.encoders.text import TextEncoder, TextEncoderConfig
from graphrec.evaluation import EvalConfig
from graphrec.evaluation.ranking import evaluate_embeddings
from graphrec.training.lazy_adam import LazyAdam
from graphrec.training.run import ModelConfig, TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (compares CUDA with CPU)")

QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda")
    return convert("synthetic", "-", root / "syn", reader_options={"users": 300, "items": 200}).dataset


def _train(dataset, model: ModelConfig, device: str, **overrides):
    config = TrainConfig(**{"epochs": 3, "batch_size": 1024, "eval_every": 3, "progress": False, "device": device}
                         | overrides)
    return train(dataset, model, config, **QUIET)


@pytest.mark.parametrize("model, overrides", [
    (ModelConfig("lightgcn", dim=32, layers=2), {}),
    (ModelConfig("gat", dim=32, layers=2), {}),
    (ModelConfig("lightgcn", dim=32, layers=2), {"sampling": "neighbor", "fanout": (5, 5), "sample_on": "cpu"}),
    (ModelConfig("gat", dim=32, layers=2), {"sampling": "neighbor", "fanout": (5, 5), "sample_on": "cpu"}),
], ids=["lightgcn-full", "gat-full", "lightgcn-sampled", "gat-sampled"])
def test_training_on_cuda_follows_the_cpu_run(synthetic, model, overrides):
    cpu = _train(synthetic, model, "cpu", **overrides).metrics
    cuda = _train(synthetic, model, "cuda", **overrides).metrics
    # Same seed, same negatives and samples (drawn on the CPU): only float rounding differs.
    cpu_losses = [epoch["loss"] for epoch in cpu["epochs"]]
    cuda_losses = [epoch["loss"] for epoch in cuda["epochs"]]
    np.testing.assert_allclose(cuda_losses, cpu_losses, rtol=1e-3)
    assert abs(cuda["valid"]["recall@20"] - cpu["valid"]["recall@20"]) < 0.02
    assert cuda["train_config"]["device"] == "cuda"


@pytest.mark.parametrize("model", [ModelConfig("lightgcn", dim=32, layers=2), ModelConfig("gat", dim=32, layers=2)],
                         ids=["lightgcn", "gat"])
def test_sampling_on_the_gpu_trains_like_sampling_on_the_cpu(synthetic, model):
    sampled = {"sampling": "neighbor", "fanout": (5, 5), "epochs": 6, "eval_every": 6}
    on_cpu = _train(synthetic, model, "cuda", sample_on="cpu", **sampled).metrics
    lines = []
    on_gpu = train(synthetic, model, TrainConfig(batch_size=1024, progress=False, device="cuda", **sampled),
                   log=lines.append).metrics
    assert any(line.startswith("neighbour sampling on cuda") for line in lines), lines  # sample_on="auto"
    # Other random draws (the GPU's generator), the same distribution: the runs differ by sampling noise only.
    np.testing.assert_allclose([e["loss"] for e in on_gpu["epochs"]], [e["loss"] for e in on_cpu["epochs"]],
                               rtol=0.05)
    assert abs(on_gpu["valid"]["recall@20"] - on_cpu["valid"]["recall@20"]) < 0.05


def test_resume_with_gpu_sampling_continues_exactly(synthetic, tmp_path):
    model = ModelConfig("lightgcn", dim=16, layers=2)
    config = TrainConfig(epochs=3, batch_size=1024, sampling="neighbor", fanout=(5, 5), sample_on="device",
                         deterministic=True, progress=False, device="cuda", eval_ks=(20,))
    straight = train(synthetic, model, config, out=tmp_path / "a", **QUIET)
    train(synthetic, model, dataclasses.replace(config, epochs=1), out=tmp_path / "b", **QUIET)
    resumed = train(synthetic, model, config, out=tmp_path / "b", resume=True, **QUIET)
    assert [e["loss"] for e in resumed.metrics["epochs"]] == pytest.approx(
        [e["loss"] for e in straight.metrics["epochs"]], rel=1e-6)
    # The sampler's random state is its CPU generator, so the run carries on with the sampling moved.
    moved = train(synthetic, model, dataclasses.replace(config, epochs=4, sample_on="cpu"), out=tmp_path / "b",
                  resume=True, **QUIET)
    assert [e["epoch"] for e in moved.metrics["epochs"]] == [1, 2, 3, 4]


def test_evaluation_on_cuda_equals_cpu(synthetic):
    generator = torch.Generator().manual_seed(0)
    users = torch.randn(synthetic.num_users, 16, generator=generator)
    items = torch.randn(synthetic.num_items, 16, generator=generator)
    config = EvalConfig(ks=(10, 20), batch_size=64)
    cpu = evaluate_embeddings(users, items, synthetic, "test", config, device="cpu").metrics
    cuda = evaluate_embeddings(users, items, synthetic, "test", config, device="cuda").metrics
    assert cpu.keys() == cuda.keys()
    for key in cpu:
        assert cuda[key] == pytest.approx(cpu[key], rel=1e-5, abs=1e-7), key


def test_lazy_adam_on_cuda_equals_cpu():
    """The embedding optimiser of sampled training (index_select / index_copy_ / index_add_ on the device)."""
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(500, 8, generator=generator)
    batches = [torch.randint(0, 400, (200,), generator=generator) for _ in range(5)]
    tables = {}
    for device in ("cpu", "cuda"):
        table = torch.nn.Embedding.from_pretrained(weights.clone(), freeze=False, sparse=True).to(device)
        optimizer = LazyAdam(table.parameters(), lr=0.05)
        for rows in batches:
            optimizer.zero_grad()
            (table(rows.to(device)) ** 2).sum().backward()
            optimizer.step()
        tables[device] = table.weight.detach().cpu()
    torch.testing.assert_close(tables["cuda"], tables["cpu"], rtol=1e-5, atol=1e-6)
    assert torch.equal(tables["cuda"][400:], weights[400:])


def _tiny_bert(directory: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    words = ["toy", "story", "schindler", "list", "comedy", "drama", "war", "animation", "1995", "1993"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizer(str(directory / "vocab.txt")).save_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64)
    transformers.BertModel(config).save_pretrained(directory)
    return directory


def test_text_encoder_fp16_on_cuda_matches_fp32_on_cpu(tmp_path):
    model_dir = _tiny_bert(tmp_path)
    texts = ["toy story 1995 animation comedy", "schindler list 1993 drama war", "toy story"]
    cpu = TextEncoder(TextEncoderConfig(model=str(model_dir), device="cpu"))
    cuda = TextEncoder(TextEncoderConfig(model=str(model_dir), device="cuda"))
    assert cuda.identity["precision"] == "fp16"
    a, b = cpu.encode(texts, progress=False), cuda.encode(texts, progress=False)
    assert b.dtype == np.float32 and a.shape == b.shape
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-3)
    assert (a * b).sum(axis=1).min() > 0.999  # cosine of unit vectors


def test_image_encoder_fp16_on_cuda_matches_fp32_on_cpu(tmp_path):
    torch.manual_seed(0)
    torchvision = pytest.importorskip("torchvision")
    weights = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(4)]
    cpu = ImageEncoder(ImageEncoderConfig("resnet18", weights=str(weights), device="cpu")).encode(images)
    cuda = ImageEncoder(ImageEncoderConfig("resnet18", weights=str(weights), device="cuda")).encode(images)
    assert cpu.shape == cuda.shape == (4, 512)
    cosine = (cpu * cuda).sum(1) / (np.linalg.norm(cpu, axis=1) * np.linalg.norm(cuda, axis=1))
    assert cosine.min() > 0.999
