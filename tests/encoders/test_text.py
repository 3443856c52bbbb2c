"""Text encoder: assembled texts, the real all-MiniLM-L6-v2, pooling, batching, truncation, load errors."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrec.data.dataset import load_dataset
from graphrec.encoders import TextEncoder, TextEncoderConfig, assemble_text, encode_text
from graphrec.errors import GraphrecError

DEFAULT_FIELDS = TextEncoderConfig(model="unused").fields


# ------------------------------------------------------------ assemble_text
def test_assemble_text_on_movielens_items(movielens_dir: Path) -> None:
    items = load_dataset(movielens_dir).items
    texts = assemble_text(items, DEFAULT_FIELDS)
    assert len(texts) == len(items) == 1682
    assert texts[0] == "Toy Story (1995). Year: 1995. Genres: Animation, Children's, Comedy"
    # Two movies have no release date, hence no year: the segment is left out, not written as "nan".
    no_year = np.flatnonzero(items["year"].isna().to_numpy())
    assert items["item_id"].iloc[no_year].tolist() == ["267", "1412"]
    assert texts[no_year[0]] == "unknown. Genres: unknown"
    assert texts[no_year[1]] == ("Land Before Time III: The Time of the Great Giving (1995) (V). "
                                 "Genres: Animation, Children's")
    assert not any("nan" in text.lower().split() or "<na>" in text.lower() for text in texts)


def test_assemble_text_skips_missing_values_and_absent_columns() -> None:
    items = pd.DataFrame({
        "title": ["Blue Mug", None, "", "Plain Kite"],
        "year": pd.array([2001, pd.NA, 1999, None], dtype="Int64"),
        "genres": [["Kitchen", "Gifts"], np.array(["Toys"], dtype=object), [], None],
        "brand": ["Aurelo", np.nan, None, "  "],
        "text": ["A sturdy mug.", "Soft and fun!", None, float("nan")],
    })
    texts = assemble_text(items, ("title", "year", "genres", "categories", "brand", "text"))
    assert texts == [
        "Blue Mug. Year: 2001. Genres: Kitchen, Gifts. Brand: Aurelo. A sturdy mug.",
        "Genres: Toys. Soft and fun!",
        "Year: 1999",
        "Plain Kite",
    ]
    # Field order follows the configuration, not the frame.
    assert assemble_text(items.head(1), ("brand", "title")) == ["Brand: Aurelo. Blue Mug"]
    assert assemble_text(items.iloc[[2]], ("brand", "text")) == [""]


def test_assemble_text_needs_one_known_field() -> None:
    items = pd.DataFrame({"item_id": ["a"], "colour": ["red"]})
    with pytest.raises(GraphrecError, match=r"none of the text fields.*'colour'"):
        assemble_text(items, ("title", "text"))


# ------------------------------------------------------------------ encoder
def test_embeddings_carry_meaning(text_encoder: TextEncoder) -> None:
    toy, toy2, schindler = text_encoder.encode(["Toy Story (1995)", "Toy Story 2 (1999)", "Schindler's List (1993)"])
    assert text_encoder.dim == 384
    assert toy.shape == (384,)
    np.testing.assert_allclose(np.linalg.norm([toy, toy2, schindler], axis=1), 1.0, atol=1e-5)
    assert float(toy @ toy2) > float(toy @ schindler) + 0.1


def test_batch_size_does_not_change_embeddings(text_encoder: TextEncoder, movielens_dir: Path) -> None:
    texts = assemble_text(load_dataset(movielens_dir).items.iloc[::170], DEFAULT_FIELDS)
    small_batches = copy.copy(text_encoder)  # shares the loaded model
    small_batches.config = dataclasses.replace(text_encoder.config, batch_size=3)
    together = text_encoder.encode(texts)
    apart = small_batches.encode(texts)
    assert together.shape == (len(texts), 384)
    np.testing.assert_allclose(apart, together, atol=1e-5)
    # Order is kept even though batches are formed longest first.
    np.testing.assert_allclose(text_encoder.encode(texts[::-1]), together[::-1], atol=1e-5)


def test_matches_sentence_transformers(text_encoder: TextEncoder, minilm_dir: Path) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference_model = sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")
    texts = ["Toy Story (1995). Year: 1995. Genres: Animation, Children's, Comedy",
             "Everloom Blue Square Bowl. This charming bowl comes in cobalt with stripes.",
             "a", "Schindler's List (1993)"]
    reference = reference_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(text_encoder.encode(texts), reference, atol=1e-4)


def test_max_length_truncates(minilm_dir: Path) -> None:
    encoder = TextEncoder(TextEncoderConfig(model=str(minilm_dir), max_length=6, device="cpu"))
    assert encoder.max_length == 6 and encoder.identity["max_length"] == 6
    # [CLS] + 4 word pieces + [SEP]: the different endings are cut off, the same beginnings remain.
    same_start = encoder.encode(["red round kitchen mug with stripes", "red round kitchen mug, violet dots everywhere"])
    np.testing.assert_allclose(same_start[0], same_start[1], atol=1e-6)
    different_start = encoder.encode(["blue square garden planter", "red round kitchen mug"])
    assert float(different_start[0] @ different_start[1]) < 0.99


def test_encode_text_marks_items_without_text_missing(text_encoder: TextEncoder, synthetic_source: Path) -> None:
    dataset = load_dataset(synthetic_source)
    items = dataset.items.copy()
    for column in ("title", "text", "brand", "categories"):
        items[column] = items[column].astype(object)
        items.at[3, column] = None
    in_memory = dataclasses.replace(dataset, items=items, path=None)  # not on disk: no cache
    lines: list[str] = []
    features = encode_text(in_memory, text_encoder, log=lines.append)
    assert features.name == "text" and features.values.shape == (24, 384) and features.values.dtype == np.float32
    assert features.mask.tolist() == [i != 3 for i in range(24)]
    assert not features.values[3].any()
    texts = assemble_text(items, DEFAULT_FIELDS)
    present = [i for i in range(24) if i != 3]
    np.testing.assert_allclose(features.values[present], text_encoder.encode([texts[i] for i in present]), atol=1e-5)
    assert features.encoder["run"] == {**features.encoder["run"], "items": 24, "missing": 1, "cached": 0,
                                       "encoded": 23}
    assert features.encoder["fields"] == ["title", "categories", "brand", "text"]
    assert any("1 of 24 items have none of the fields" in line for line in lines)


# -------------------------------------------------------------- load errors
def test_missing_or_invalid_model_directory(tmp_path: Path) -> None:
    with pytest.raises(GraphrecError, match="does not exist"):
        TextEncoder(TextEncoderConfig(model=str(tmp_path / "no-such-model")))
    with pytest.raises(GraphrecError, match=f"could not load a text model from directory {tmp_path}"):
        TextEncoder(TextEncoderConfig(model=str(tmp_path)))


def test_hub_name_offline_gives_clear_error() -> None:
    # A subprocess with HF_HUB_OFFLINE=1: the real loading code, without minutes of network retries.
    script = textwrap.dedent("""
        from graphrec.encoders import TextEncoder, TextEncoderConfig
        from graphrec.errors import GraphrecError
        try:
            TextEncoder(TextEncoderConfig(model="graphrec-tests/no-such-model", device="cpu"))
        except GraphrecError as exc:
            print(exc)
        else:
            raise SystemExit("loaded a model that does not exist")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    message = result.stdout
    assert "graphrec-tests/no-such-model" in message
    assert "downloads are unavailable" in message
    assert "--model DIR" in message


def test_unreachable_hub_fails_at_once_and_cached_models_still_load(minilm_dir: Path, tmp_path: Path) -> None:
    """With the Hub unreachable (a closed local port as its endpoint): a Hub name that is not cached
    fails after one request instead of a minute of retries, and one in the Hugging Face cache loads
    from it without retrying."""
    snapshot = tmp_path / "hub" / "models--graphrec-tests--cached-minilm" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    for file in minilm_dir.iterdir():
        if file.is_file():
            (snapshot / file.name).symlink_to(file)
    script = textwrap.dedent("""
        from graphrec.encoders import TextEncoder, TextEncoderConfig
        from graphrec.errors import GraphrecError
        print("dim", TextEncoder(TextEncoderConfig(model="graphrec-tests/cached-minilm", device="cpu")).dim)
        try:
            TextEncoder(TextEncoderConfig(model="graphrec-tests/no-such-model", device="cpu"))
        except GraphrecError as exc:
            print(exc)
    """)
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**env, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": "http://127.0.0.1:9"},
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dim 384" in result.stdout
    assert "could not load text model 'graphrec-tests/no-such-model'" in result.stdout
    assert "the Hugging Face Hub cannot be reached" in result.stdout
    assert "Retrying" not in result.stderr


def test_config_rejects_nonsense() -> None:
    with pytest.raises(GraphrecError, match="max_length"):
        TextEncoderConfig(model="m", max_length=0)
    with pytest.raises(GraphrecError, match="batch_size"):
        TextEncoderConfig(model="m", batch_size=0)
    with pytest.raises(GraphrecError, match="fields"):
        TextEncoderConfig(model="m", fields=())


def test_chosen_fields_must_be_columns_and_are_checked_before_loading(movielens_dir: Path) -> None:
    dataset = load_dataset(movielens_dir)
    config = TextEncoderConfig(model="no/such/model/dir", fields=("title", "genre", "yeer"))
    with pytest.raises(GraphrecError, match=r"text field\(s\) \['genre', 'yeer'\] are not item columns"):
        encode_text(dataset, config)
