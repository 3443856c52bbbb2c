"""End to end with 30% of items lacking an image: encoding reports and masks them, models train on the rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from graphrec.data.convert import convert
from graphrec.data.dataset import load_dataset
from graphrec.encoders import ImageEncoderConfig, encode
from graphrec.training.run import ModelConfig, TrainConfig, train

FAST = dict(epochs=3, batch_size=1024, lr=5e-3, progress=False, eval_ks=(10, 20))


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("missing")
    path = root / "synthetic"
    convert("synthetic", "-", path, reader_options={"users": 300, "items": 150, "seed": 4, "image_size": 32,
                                                    "cold_fraction": 0.2})
    dataset = load_dataset(path)
    rng = np.random.default_rng(0)
    lost = rng.choice(dataset.num_items, size=int(0.3 * dataset.num_items), replace=False)
    for index in lost:
        dataset.image_paths()[index].unlink()
    torch.manual_seed(0)
    weights = root / "resnet18-random.pt"  # randomly initialised ResNet-18: no weights can be downloaded here
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    encode(path, "image", ImageEncoderConfig(model="resnet18", weights=str(weights), device="cpu"), log=None)
    return path, np.sort(lost)


def test_missing_images_are_masked_not_fatal(dataset_dir):
    path, lost = dataset_dir
    dataset = load_dataset(path)
    image = dataset.features["image"]
    assert np.array_equal(np.flatnonzero(~image.mask), lost)
    assert np.all(image.values[lost] == 0)
    assert dataset.manifest["modalities"]["image"]["missing"] == len(lost)


@pytest.mark.parametrize("model", ["vbpr", "gat"])
def test_content_models_train_with_missing_images(dataset_dir, model):
    path, lost = dataset_dir
    gat_options = {"layers": 1, "entities": ()} if model == "gat" else {}
    run = train(path, ModelConfig(model, dim=16, **gat_options), TrainConfig(**FAST), log=lambda _: None)
    for split in ("valid", "test", "test_cold"):
        assert np.isfinite(run.metrics[split]["recall@20"])
    _, item_emb = run.embeddings()
    assert torch.isfinite(item_emb).all()
    if model == "gat":
        names, weights = run.model.modality_attention()
        weights = weights.cpu()
        assert names == ["image"]
        assert torch.all(weights[torch.as_tensor(lost), 0] == 0)
        present = np.setdiff1d(np.arange(run.dataset.num_items), lost)
        torch.testing.assert_close(weights[torch.as_tensor(present), 0], torch.ones(len(present)))
    else:
        # VBPR: a missing image is the learned placeholder, the same vector for every such item
        content = run.model.content(torch.as_tensor(lost))
        torch.testing.assert_close(content, content[:1].expand_as(content))
