"""Image encoder: headless torchvision networks, weights files, preprocessing, unreadable images.

No pretrained weights can be downloaded here, so the networks are randomly
initialised with a fixed seed (``resnet18`` and ``mobilenet_v3_small``), saved with
``torch.save(model.state_dict(), file)`` and loaded back through ``weights=file``.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from graphrec.data.dataset import load_dataset
from graphrec.encoders import ImageEncoder, ImageEncoderConfig, encode_images
from graphrec.encoders.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    find_classification_head,
    load_rgb,
    remove_classification_head,
    standard_transform,
)
from graphrec.errors import GraphrecError


def _seeded(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.get_model(name, weights=None).eval()


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    model = _seeded("resnet18")
    path = tmp_path_factory.mktemp("weights") / "resnet18-seed0.pt"
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture(scope="module")
def pictures(synthetic_source: Path) -> list[Image.Image]:
    paths = [path for path in load_dataset(synthetic_source).image_paths() if path is not None]
    return [load_rgb(path) for path in paths[:4]]


def _in_memory_features(model: nn.Module, head: str, encoder: ImageEncoder, images: list[Image.Image]) -> np.ndarray:
    headless = copy.deepcopy(model).eval()
    parent_name, _, child = head.rpartition(".")
    setattr(headless.get_submodule(parent_name) if parent_name else headless, child, nn.Identity())
    with torch.inference_mode():
        return headless(torch.stack([encoder.transform(image) for image in images])).numpy()


# ------------------------------------------------------------ weights files
def test_resnet18_weights_file_gives_the_in_memory_models_features(resnet18_file, pictures) -> None:
    path, model = resnet18_file
    encoder = ImageEncoder(ImageEncoderConfig("resnet18", weights=str(path), batch_size=3, device="cpu"))
    assert encoder.head == "fc" and encoder.dim == 512
    features = encoder.encode(pictures)
    assert features.shape == (4, 512) and features.dtype == np.float32
    np.testing.assert_allclose(features, _in_memory_features(model, "fc", encoder, pictures), rtol=1e-5, atol=1e-5)
    assert encoder.identity["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert encoder.provenance()["weights"] == str(path.resolve())
    # The features do depend on the weights: another initialisation gives other features.
    other = ImageEncoder(ImageEncoderConfig("resnet18", weights=None, device="cpu"))
    assert not np.allclose(other.encode(pictures), features, atol=1e-3)
    assert other.identity["state_sha256"] != encoder.identity.get("state_sha256")


def test_mobilenet_weights_file_gives_the_in_memory_models_features(tmp_path: Path, pictures) -> None:
    model = _seeded("mobilenet_v3_small", seed=1)
    path = tmp_path / "mobilenet.pth"
    torch.save(model.state_dict(), path)
    encoder = ImageEncoder(ImageEncoderConfig("mobilenet_v3_small", weights=str(path), device="cpu"))
    assert encoder.head == "classifier.3" and encoder.dim == 1024
    np.testing.assert_allclose(encoder.encode(pictures), _in_memory_features(model, "classifier.3", encoder, pictures),
                               rtol=1e-5, atol=1e-5)


def test_backbone_only_weights_file_loads(tmp_path: Path, resnet18_file, pictures) -> None:
    _, model = resnet18_file
    backbone = {key: value for key, value in model.state_dict().items() if not key.startswith("fc.")}
    torch.save(backbone, tmp_path / "backbone.pt")
    encoder = ImageEncoder(ImageEncoderConfig("resnet18", weights=str(tmp_path / "backbone.pt"), device="cpu"))
    np.testing.assert_allclose(encoder.encode(pictures[:2]), _in_memory_features(model, "fc", encoder, pictures[:2]),
                               rtol=1e-5, atol=1e-5)


def test_wrong_weights_files_give_errors_naming_the_file(tmp_path: Path, resnet18_file) -> None:
    path, model = resnet18_file
    with pytest.raises(GraphrecError, match=rf"weights file {path} does not fit MobileNetV3.*unexpected key"):
        ImageEncoder(ImageEncoderConfig("mobilenet_v3_small", weights=str(path), device="cpu"))

    partial = dict(model.state_dict())
    del partial["layer1.0.conv1.weight"]
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(GraphrecError, match=r"partial\.pt does not fit ResNet.*layer1\.0\.conv1\.weight"):
        ImageEncoder(ImageEncoderConfig("resnet18", weights=str(tmp_path / "partial.pt"), device="cpu"))

    resized = dict(model.state_dict())
    resized["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    torch.save(resized, tmp_path / "resized.pt")
    with pytest.raises(GraphrecError, match=r"resized\.pt does not fit ResNet: size mismatch for conv1\.weight"):
        ImageEncoder(ImageEncoderConfig("resnet18", weights=str(tmp_path / "resized.pt"), device="cpu"))

    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(GraphrecError, match=r"garbage\.pt cannot be read as a PyTorch state_dict"):
        ImageEncoder(ImageEncoderConfig("resnet18", weights=str(tmp_path / "garbage.pt"), device="cpu"))

    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(GraphrecError, match=r"list\.pt does not hold a state_dict"):
        ImageEncoder(ImageEncoderConfig("resnet18", weights=str(tmp_path / "list.pt"), device="cpu"))

    with pytest.raises(GraphrecError, match=r"missing\.pt does not exist"):
        ImageEncoder(ImageEncoderConfig("resnet18", weights=str(tmp_path / "missing.pt"), device="cpu"))


def test_unknown_model_or_weights_name() -> None:
    with pytest.raises(GraphrecError, match=r"unknown image model 'resnet19'.*resnet18"):
        ImageEncoder(ImageEncoderConfig("resnet19"))
    with pytest.raises(GraphrecError, match=r"unknown weights 'IMAGENET9K' .*IMAGENET1K_V1"):
        ImageEncoder(ImageEncoderConfig("resnet18", weights="IMAGENET9K"))


# ----------------------------------------------------------- architecture
@pytest.mark.parametrize(("name", "head", "dim"), [
    ("resnet18", "fc", 512),
    ("mobilenet_v3_small", "classifier.3", 1024),  # the hidden 1024-unit layer of the head stays
    ("efficientnet_b0", "classifier.1", 1280),
    ("convnext_tiny", "classifier.2", 768),  # its LayerNorm2d and Flatten stay
    ("squeezenet1_1", "classifier.1", 512),  # a 1x1 convolution classifies; ReLU and pooling stay
    ("vit_b_16", "heads.head", 768),
])
def test_classification_head_is_replaced_by_identity(name: str, head: str, dim: int) -> None:
    model = torchvision.models.get_model(name, weights=None).eval()
    assert find_classification_head(model) == head
    assert remove_classification_head(model) == head
    assert isinstance(model.get_submodule(head), nn.Identity)
    image = standard_transform(name)(Image.new("RGB", (40, 30), (200, 30, 30))).unsqueeze(0)
    with torch.inference_mode():
        assert tuple(model(image).shape) == (1, dim)


# ---------------------------------------------------------- preprocessing
def test_standard_transform_resizes_crops_and_normalises() -> None:
    colour = (255, 0, 128)
    for name, size in (("resnet18", 224), ("inception_v3", 299)):
        out = standard_transform(name)(Image.new("RGB", (64, 48), colour))
        assert out.shape == (3, size, size) and out.dtype == torch.float32
        expected = (torch.tensor(colour) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        torch.testing.assert_close(out.mean(dim=(1, 2)), expected, atol=1e-4, rtol=0)


def test_load_rgb_puts_transparency_over_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 255, 0))
    image.save(tmp_path / "a.png")
    Image.new("L", (4, 4), 7).save(tmp_path / "grey.png")
    loaded = load_rgb(tmp_path / "a.png")
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == (255, 255, 255) and loaded.getpixel((1, 1)) == (255, 0, 0)
    assert load_rgb(tmp_path / "grey.png").getpixel((2, 2)) == (7, 7, 7)


# ---------------------------------------------------------------- dataset
def test_corrupt_and_missing_images_are_reported_and_masked(synthetic_dir: Path, resnet18_file) -> None:
    dataset = load_dataset(synthetic_dir)
    paths = dataset.image_paths()
    paths[2].write_bytes(paths[2].read_bytes()[:200])  # a truncated PNG
    paths[5].write_bytes(b"this is not a picture")
    paths[9].write_bytes(b"")  # failed downloads: identical empty files, decoded once, each reported
    paths[11].write_bytes(b"")
    paths[7].unlink()
    lines: list[str] = []
    encoder = ImageEncoder(ImageEncoderConfig("resnet18", weights=str(resnet18_file[0]), batch_size=8, device="cpu"))
    features = encode_images(dataset, encoder, log=lines.append)

    broken = {2, 5, 7, 9, 11}
    assert features.values.shape == (24, 512)
    assert features.mask.tolist() == [i not in broken for i in range(24)]
    assert not features.values[sorted(broken)].any()
    assert (np.abs(features.values[features.mask]).sum(axis=1) > 0).all()
    good = [i for i in range(24) if i not in broken]
    np.testing.assert_allclose(features.values[good[:3]], encoder.encode([load_rgb(paths[i]) for i in good[:3]]),
                               rtol=1e-5, atol=1e-5)
    for index in sorted(broken):
        item_id = dataset.items["item_id"].iloc[index]
        assert any(f"item {index} (id {item_id!r}): image {paths[index]}" in line for line in lines), lines
    assert any("item 7" in line and "does not exist" in line for line in lines)
    assert any("item 2" in line and "cannot be decoded" in line for line in lines)
    run = features.encoder["run"]
    assert run["missing"] == 5 and run["problems"] == 5 and run["encoded"] == 19 and len(run["problem_items"]) == 5


def test_a_dataset_without_images_is_refused_before_a_model_loads(movielens_dir: Path) -> None:
    with pytest.raises(GraphrecError, match=r"has no local image for any of its [0-9,]+ items"):
        encode_images(load_dataset(movielens_dir), ImageEncoderConfig("no_such_architecture"))
