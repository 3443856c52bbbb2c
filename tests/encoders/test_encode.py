"""``encode`` end to end on dataset directories, and the content-addressed embedding cache."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torchvision

from graphrec.data.dataset import load_dataset
from graphrec.encoders import EmbeddingCache, ImageEncoderConfig, TextEncoder, TextEncoderConfig, encode
from graphrec.encoders.cache import encode_with_cache, sha256_directory
from graphrec.errors import GraphrecError


def _snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (hidden ones too) and the sha256 of its bytes."""
    return {path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def _set_text(dataset_dir: Path, index: int, text: str) -> None:
    table = pq.read_table(dataset_dir / "items.parquet")
    frame = table.to_pandas()
    frame.at[index, "text"] = text
    pq.write_table(table.from_pandas(frame, schema=table.schema, preserve_index=False),
                   dataset_dir / "items.parquet")


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


# --------------------------------------------------------------- encode
def test_encode_text_end_to_end_with_cache(synthetic_dir: Path, text_encoder: TextEncoder,
                                           minilm_dir: Path) -> None:
    lines: list[str] = []
    first = encode(synthetic_dir, "text", text_encoder, log=lines.append)
    assert first.encoder["run"]["encoded"] == 24 and first.encoder["run"]["cached"] == 0

    manifest = json.loads((synthetic_dir / "manifest.json").read_text())
    entry = manifest["modalities"]["text"]
    assert entry["file"] == "features/text.npy" and entry["mask"] == "features/text.mask.npy"
    assert entry["dim"] == 384 and entry["missing"] == 0
    provenance = entry["encoder"]
    assert provenance["kind"] == "text" and provenance["model"] == str(minilm_dir)
    assert provenance["model_sha256"] == sha256_directory(minilm_dir)
    assert provenance["fields"] == ["title", "categories", "brand", "text"]
    assert provenance["max_length"] == 128 and provenance["pooling"] == "mean" and provenance["normalised"] is True
    assert provenance["transformers_version"] and provenance["created"]

    dataset = load_dataset(synthetic_dir)
    assert dataset.modalities == ["text"]
    stored = dataset.features["text"]
    assert stored.dim == 384 and stored.mask.all() and stored.values.dtype == np.float32
    np.testing.assert_array_equal(stored.values, first.values)
    assert any("24 encoded" in line for line in lines)
    assert (synthetic_dir / "images").is_dir() and len(list((synthetic_dir / "images").iterdir())) == 24

    lines.clear()
    second = encode(synthetic_dir, "text", text_encoder, log=lines.append)
    assert second.encoder["run"]["encoded"] == 0 and second.encoder["run"]["cached"] == 24
    assert any("0 encoded, 24 from cache" in line for line in lines)
    np.testing.assert_array_equal(second.values, first.values)

    _set_text(synthetic_dir, 5, "A completely different product: a violet starry kite with plaid checks.")
    third = encode(synthetic_dir, "text", text_encoder)
    assert third.encoder["run"]["encoded"] == 1 and third.encoder["run"]["cached"] == 23
    changed = np.flatnonzero(~np.all(third.values == first.values, axis=1))
    assert changed.tolist() == [5]
    np.testing.assert_allclose(load_dataset(synthetic_dir).features["text"].values, third.values)


def test_encode_image_end_to_end_beside_text(synthetic_dir: Path, text_encoder: TextEncoder,
                                            resnet18_weights: Path) -> None:
    encode(synthetic_dir, "text", text_encoder, log=None)
    config = ImageEncoderConfig("resnet18", weights=str(resnet18_weights), batch_size=12, device="cpu")
    features = encode(synthetic_dir, "image", config, name="image_resnet18", log=None)
    assert features.name == "image_resnet18" and features.values.shape == (24, 512)

    manifest = json.loads((synthetic_dir / "manifest.json").read_text())
    assert sorted(manifest["modalities"]) == ["image_resnet18", "text"]
    entry = manifest["modalities"]["image_resnet18"]
    assert entry["file"] == "features/image_resnet18.npy" and entry["dim"] == 512 and entry["missing"] == 0
    assert entry["encoder"]["weights_sha256"] == hashlib.sha256(resnet18_weights.read_bytes()).hexdigest()
    assert entry["encoder"]["kind"] == "image" and entry["encoder"]["torchvision_version"] == torchvision.__version__

    dataset = load_dataset(synthetic_dir)
    assert sorted(dataset.modalities) == ["image_resnet18", "text"]
    assert dataset.features["image_resnet18"].mask.all()
    np.testing.assert_array_equal(dataset.features["image_resnet18"].values, features.values)

    again = encode(synthetic_dir, "image", config, name="image_resnet18", log=None)
    assert again.encoder["run"]["encoded"] == 0 and again.encoder["run"]["cached"] == 24
    np.testing.assert_array_equal(again.values, features.values)


def test_failed_encode_leaves_the_dataset_unchanged(synthetic_dir: Path, text_encoder: TextEncoder,
                                                   tmp_path: Path) -> None:
    encode(synthetic_dir, "text", text_encoder, log=None)
    before = _snapshot(synthetic_dir)
    bad_weights = tmp_path / "bad.pt"
    bad_weights.write_bytes(b"definitely not torch")
    with pytest.raises(GraphrecError, match=r"bad\.pt"):
        encode(synthetic_dir, "image", ImageEncoderConfig("resnet18", weights=str(bad_weights), device="cpu"),
               log=None)
    with pytest.raises(GraphrecError, match="does not exist"):
        encode(synthetic_dir, "text", TextEncoderConfig(model=str(tmp_path / "no-model")), name="text", log=None)
    assert _snapshot(synthetic_dir) == before


def test_encode_rejects_bad_arguments(synthetic_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(GraphrecError, match="unknown modality 'smell'"):
        encode(synthetic_dir, "smell", ImageEncoderConfig())
    with pytest.raises(GraphrecError, match="needs a AudioEncoderConfig"):
        encode(synthetic_dir, "audio", ImageEncoderConfig())
    with pytest.raises(GraphrecError, match="unknown side 'shop'"):
        encode(synthetic_dir, "image", ImageEncoderConfig(), side="shop")
    with pytest.raises(GraphrecError, match="needs a TextEncoderConfig"):
        encode(synthetic_dir, "text", ImageEncoderConfig())
    with pytest.raises(GraphrecError, match="invalid modality name"):
        encode(synthetic_dir, "image", ImageEncoderConfig(), name="../escape")
    with pytest.raises(GraphrecError, match=r"manifest\.json is missing"):
        encode(tmp_path, "image", ImageEncoderConfig())


# ---------------------------------------------------------------- cache
def test_cache_round_trip_and_identity(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, {"kind": "text", "model_sha256": "abc", "max_length": 128})
    keys = [cache.key(text.encode()) for text in ("red mug", "blue kite", "green rug")]
    assert len(set(keys)) == 3 and all(len(key) == 64 for key in keys)
    found, values = cache.lookup(keys)
    assert not found.any() and values is None

    rows = np.arange(6, dtype=np.float32).reshape(3, 2)
    cache.store(keys[:2], rows[:2])
    found, values = cache.lookup([keys[2], keys[0], keys[1]])
    assert found.tolist() == [False, True, True]
    np.testing.assert_array_equal(values, [[0, 0], [0, 1], [2, 3]])

    reopened = EmbeddingCache(tmp_path, {"kind": "text", "model_sha256": "abc", "max_length": 128})
    assert reopened.key(b"red mug") == keys[0] and len(reopened) == 2
    other = EmbeddingCache(tmp_path, {"kind": "text", "model_sha256": "abc", "max_length": 64})
    assert other.key(b"red mug") != keys[0] and len(other) == 0


def test_cache_compacts_shards(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, {"model": "m"}, max_shards=2)
    keys = [cache.key(str(i).encode()) for i in range(5)]
    for i, key in enumerate(keys):
        cache.store([key], np.full((1, 3), i, dtype=np.float32))
    assert len(cache.shards()) <= 2
    found, values = cache.lookup(keys)
    assert found.all()
    np.testing.assert_array_equal(values[:, 0], np.arange(5))


def test_unreadable_shard_is_reported_and_ignored(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, {"model": "m"})
    key = cache.key(b"x")
    cache.store([key], np.ones((1, 4), dtype=np.float32))
    cache.shards()[0].write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="unreadable embedding cache shard"):
        found, _ = cache.lookup([key])
    assert not found.any()


def test_encode_with_cache_encodes_each_distinct_input_once(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, {"model": "length"})
    texts = ["aa", "b", None, "aa", "cccc", "b"]
    keys = [cache.key(text.encode()) if text is not None else None for text in texts]
    calls: list[list[int]] = []

    def lengths(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        calls.append(sorted(positions.tolist()))
        values = np.array([[len(texts[i]), 1.0] for i in positions], dtype=np.float32)
        ok = np.array([texts[i] != "cccc" for i in positions])  # pretend "cccc" cannot be read
        return values, ok, [f"item {i} unreadable" for i in positions if texts[i] == "cccc"]

    values, mask, stats = encode_with_cache(keys, lengths, lambda: 2, cache)
    assert calls == [[0, 1, 4]]
    assert mask.tolist() == [True, True, False, True, False, True]
    np.testing.assert_array_equal(values[:, 0], [2, 1, 0, 2, 0, 1])
    assert (stats.items, stats.missing, stats.cached, stats.encoded) == (6, 2, 0, 2)
    assert stats.problems == ("item 4 unreadable",)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values_again, mask_again, stats_again = encode_with_cache(keys, lengths, lambda: 2, cache)
    assert calls[-1] == [4]  # only the unreadable input is tried again
    np.testing.assert_array_equal(values_again, values)
    np.testing.assert_array_equal(mask_again, mask)
    assert (stats_again.cached, stats_again.encoded) == (4, 0)

    nothing, nothing_mask, _ = encode_with_cache([None, None], lengths, lambda: 7, None)
    assert nothing.shape == (2, 7) and not nothing_mask.any()
