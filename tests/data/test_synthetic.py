"""The synthetic default dataset: real PNGs and texts, the given split, and planted structure content can find."""

from __future__ import annotations

import re
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from PIL import Image

from graphrec.data.formats import get_reader
from graphrec.data.formats.synthetic import COLOURS, SYNONYMS, SyntheticConfig, generate, read
from graphrec.data.raw import RawDataset
from graphrec.errors import GraphrecError

SMALL = SyntheticConfig(users=120, items=80, seed=3, image_size=32, mean_interactions=12.0)
#: The tests here look at pictures, text and interactions; sound clips and videos are
#: test_synthetic_media.py's, and leaving them out keeps the larger sets quick to generate.
NO_MEDIA = {"audio": False, "video": False}


@pytest.fixture(scope="module")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[RawDataset, Path]:
    workdir = tmp_path_factory.mktemp("synthetic-default")
    return read("-", workdir=workdir, **NO_MEDIA), workdir


@pytest.fixture(scope="module")
def many_cold_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[RawDataset, Path]:
    """Enough cold items (200) that Recall@20 among them is far from trivially high."""
    workdir = tmp_path_factory.mktemp("synthetic-cold")
    return read("-", workdir=workdir, users=600, items=1000, cold_fraction=0.2, seed=7, **NO_MEDIA), workdir


def _indices(raw: RawDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users = {uid: k for k, uid in enumerate(raw.user_universe)}
    items = {iid: k for k, iid in enumerate(raw.item_universe)}
    return (raw.interactions["user_id"].map(users).to_numpy(np.int64),
            raw.interactions["item_id"].map(items).to_numpy(np.int64),
            raw.interactions["split"].to_numpy(str))


def _png_bytes(raw: RawDataset, workdir: Path) -> list[bytes]:
    return [(workdir / relative).read_bytes() for relative in raw.items["image"]]


# ------------------------------------------------------------- determinism
def test_same_seed_gives_identical_interactions_tables_and_png_bytes(tmp_path: Path) -> None:
    first = generate(SMALL, tmp_path / "a")
    second = generate(SMALL, tmp_path / "b")
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    pd.testing.assert_frame_equal(first.items, second.items)
    pd.testing.assert_frame_equal(first.users, second.users)
    assert _png_bytes(first, tmp_path / "a") == _png_bytes(second, tmp_path / "b")


def test_another_seed_gives_other_interactions_and_images(tmp_path: Path) -> None:
    first = generate(SMALL, tmp_path / "a")
    other = generate(replace(SMALL, seed=4), tmp_path / "b")
    pairs = set(zip(first.interactions["user_id"], first.interactions["item_id"]))
    other_pairs = set(zip(other.interactions["user_id"], other.interactions["item_id"]))
    assert len(pairs & other_pairs) < 0.5 * len(pairs)
    differing = sum(a != b for a, b in zip(_png_bytes(first, tmp_path / "a"), _png_bytes(other, tmp_path / "b")))
    assert differing == SMALL.items
    assert (first.items["text"] != other.items["text"]).mean() > 0.9


def test_read_is_generate_with_the_options_and_records_provenance(tmp_path: Path) -> None:
    via_registry = get_reader("synthetic")("-", workdir=tmp_path / "a", users=SMALL.users, items=SMALL.items,
                                           seed=SMALL.seed, image_size=SMALL.image_size,
                                           mean_interactions=SMALL.mean_interactions)
    direct = generate(SMALL, tmp_path / "b")
    pd.testing.assert_frame_equal(via_registry.interactions, direct.interactions)
    assert via_registry.source["generator"] == "graphrec.data.formats.synthetic"
    assert via_registry.source["version"]
    assert via_registry.source["config"] == asdict(SMALL)
    assert any("taste clusters" in note for note in via_registry.notes)
    assert any("cold items" in note for note in via_registry.split_notes)
    assert via_registry.split_item_columns == ("cold",)


@pytest.mark.parametrize(("option", "value"), [("users", 0), ("items", 5), ("image_size", 8),
                                               ("cold_fraction", 1.0), ("mean_interactions", 2.0),
                                               ("taste_clusters", 0), ("popularity_exponent", -1.0)])
def test_bad_options_raise_an_error_naming_the_option(option: str, value: float) -> None:
    with pytest.raises(GraphrecError, match=repr(option)):
        SyntheticConfig(**{option: value})


# ------------------------------------------------------------------ images
def _hue_labels(pixels_hsv: np.ndarray) -> np.ndarray:
    """Nearest palette colour of each pixel by hue (dark texture ink keeps its colour's hue)."""
    palette = np.asarray(Image.fromarray(np.asarray([list(COLOURS.values())], dtype=np.uint8))
                         .convert("HSV"))[0, :, 0].astype(int)
    distance = np.abs(pixels_hsv[:, None, 0].astype(int) - palette[None, :])
    return np.minimum(distance, 256 - distance).argmin(axis=1)


def test_images_are_pngs_of_the_asked_size_whose_dominant_colour_is_the_items(tmp_path: Path) -> None:
    config = SyntheticConfig(users=50, items=160, seed=11, image_size=48, **NO_MEDIA)
    raw = generate(config, tmp_path)
    names = list(COLOURS)
    matches = 0
    ink_share = {texture: [] for texture in SYNONYMS["texture"]}
    for relative, colour, texture in zip(raw.items["image"], raw.items["colour"], raw.items["texture"]):
        assert relative.startswith("images/") and relative.endswith(".png")
        with Image.open(tmp_path / relative) as image:
            assert image.format == "PNG"
            assert image.size == (48, 48)
            hsv = np.asarray(image.convert("HSV")).reshape(-1, 3)
        foreground = hsv[hsv[:, 1] > 100]
        assert len(foreground) > 0.1 * len(hsv)
        matches += names[np.bincount(_hue_labels(foreground), minlength=len(names)).argmax()] == colour
        # Texture ink is a darker shade of the item's colour.
        ink_share[texture].append(np.mean(foreground[:, 2] < 0.8 * np.percentile(foreground[:, 2], 90)))
    assert matches == config.items
    plain = np.mean(ink_share.pop("plain"))
    assert all(plain < 0.5 * np.mean(shares) for shares in ink_share.values())


def test_image_files_are_named_after_the_items_under_workdir(tmp_path: Path) -> None:
    raw = generate(SMALL, tmp_path)
    assert raw.items["image"].tolist() == [f"images/{item_id}.png" for item_id in raw.items["item_id"]]
    assert raw.items["item_id"].iloc[0] == "item_00000"
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(
        Path(p).name for p in raw.items["image"])


# -------------------------------------------------------------------- text
def test_text_mentions_each_attribute_most_of_the_time_but_not_always(
        default_set: tuple[RawDataset, Path]) -> None:
    items = default_set[0].items
    texts = items["text"].str.lower()
    values = {"colour": items["colour"], "shape": items["shape"], "texture": items["texture"],
              "category": items["categories"].map(lambda categories: categories[0])}
    for attribute, column in values.items():
        mentioned = np.mean([
            any(re.search(rf"\b{re.escape(word)}\b", text) for word in SYNONYMS[attribute][value])
            for value, text in zip(column, texts)])
        assert 0.7 <= mentioned < 1.0, (attribute, mentioned)
    assert texts.nunique() == len(items)
    assert all(brand in title for brand, title in zip(items["brand"], items["title"]))
    # Synonyms are used: the canonical colour word is not the only one.
    assert texts.str.contains(r"\b(?:crimson|scarlet|cobalt|navy|emerald|violet|turquoise)\b").mean() > 0.1


# ------------------------------------------------------------------- split
def test_split_is_the_designed_given_split(many_cold_set: tuple[RawDataset, Path]) -> None:
    raw = many_cold_set[0]
    users, items, split = _indices(raw)
    cold = raw.items["cold"].to_numpy()
    assert cold.sum() == 200
    assert not np.any(cold[items] & (split == "train"))
    cold_splits = pd.Series(split[cold[items]]).value_counts()
    assert abs(cold_splits["valid"] - cold_splits["test"]) <= 1
    warm = pd.Series(split[~cold[items]]).value_counts(normalize=True)
    assert warm["train"] == pytest.approx(0.8, abs=0.03)
    assert warm["valid"] == pytest.approx(0.1, abs=0.02)
    assert warm["test"] == pytest.approx(0.1, abs=0.02)
    assert np.all(np.bincount(users[split == "train"], minlength=len(raw.user_universe)) >= 1)
    assert np.all(np.bincount(users, minlength=len(raw.user_universe)) >= 5)
    assert not pd.DataFrame({"u": users, "i": items}).duplicated().any()
    assert len(raw.item_universe) == 1000 and len(raw.user_universe) == 600


def test_timestamps_increase_per_user_and_cold_items_come_last(many_cold_set: tuple[RawDataset, Path]) -> None:
    raw = many_cold_set[0]
    users, items, _ = _indices(raw)
    timestamps = raw.interactions["timestamp"].to_numpy(np.int64)
    same_user = users[1:] == users[:-1]
    assert np.all(np.diff(users) >= 0)
    assert np.all(np.diff(timestamps)[same_user] > 0)
    cold = raw.items["cold"].to_numpy()[items].astype(int)
    assert np.all(np.diff(cold)[same_user] >= 0)


@pytest.mark.parametrize("config", [
    SyntheticConfig(users=40, items=12, seed=1, image_size=16, mean_interactions=11.0, cold_fraction=0.5),
    SyntheticConfig(users=30, items=20, seed=2, image_size=16, cold_fraction=0.0, mean_interactions=5.0),
    SyntheticConfig(users=25, items=6, seed=5, image_size=16, cold_fraction=0.8, mean_interactions=6.0),
], ids=["half-cold-near-capacity", "no-cold", "mostly-cold-tiny"])
def test_invariants_hold_at_the_edges(config: SyntheticConfig, tmp_path: Path) -> None:
    raw = generate(config, tmp_path)
    users, items, split = _indices(raw)
    cold = raw.items["cold"].to_numpy()
    assert not pd.DataFrame({"u": users, "i": items}).duplicated().any()
    assert np.all(np.bincount(users[split == "train"], minlength=config.users) >= 1)
    assert np.all(np.bincount(users, minlength=config.users) >= config.min_interactions)
    assert not np.any(cold[items] & (split == "train"))
    assert cold.sum() == config.num_cold_items
    assert set(split) <= {"train", "valid", "test"}


# --------------------------------------------------------- planted structure
def _content_scores(raw: RawDataset, train: sp.csr_matrix) -> np.ndarray:
    """log P(item's attribute values | user's train items), smoothed, summed over attributes."""
    columns = {"colour": raw.items["colour"], "shape": raw.items["shape"], "texture": raw.items["texture"],
               "brand": raw.items["brand"], "category": raw.items["categories"].map(lambda c: c[0]),
               "sound": raw.items["sound"], "motion": raw.items["motion"]}
    scores = np.zeros(train.shape)
    for column in columns.values():
        codes = pd.factorize(column)[0]
        one_hot = sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)))
        affinity = (train @ one_hot).toarray() + 1.0
        affinity /= affinity.sum(axis=1, keepdims=True)
        scores += np.log(affinity) @ one_hot.T.toarray()
    return scores


def _recall_at_20(scores: np.ndarray, candidates: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean Recall@20 over users with test items, and what a random ranking would get in expectation."""
    ranked = np.argsort(-np.where(candidates, scores, -np.inf), axis=1)[:, :20]
    hits = np.take_along_axis(truth & candidates, ranked, axis=1).sum(axis=1)
    relevant = truth.sum(axis=1)
    evaluated = relevant > 0
    random = np.minimum(20, candidates.sum(axis=1)) / candidates.sum(axis=1)
    return float((hits[evaluated] / relevant[evaluated]).mean()), float(random[evaluated].mean())


def test_content_alone_ranks_cold_and_warm_test_items_far_better_than_random(
        many_cold_set: tuple[RawDataset, Path]) -> None:
    raw = many_cold_set[0]
    users, items, split = _indices(raw)
    shape = (len(raw.user_universe), len(raw.item_universe))

    def matrix(names: tuple[str, ...]) -> sp.csr_matrix:
        mask = np.isin(split, names)
        return sp.csr_matrix((np.ones(mask.sum()), (users[mask], items[mask])), shape=shape)

    scores = _content_scores(raw, matrix(("train",)))
    seen = matrix(("train", "valid")).toarray() > 0
    truth = matrix(("test",)).toarray() > 0
    cold = raw.items["cold"].to_numpy()
    for name, pool in (("cold", cold), ("warm", ~cold)):
        recall, random = _recall_at_20(scores, pool[None, :] & ~seen, truth & pool[None, :])
        assert random < 0.15, name
        assert recall >= 2 * random, (name, recall, random)


def test_item_popularity_is_skewed(default_set: tuple[RawDataset, Path]) -> None:
    raw = default_set[0]
    counts = raw.interactions["item_id"].value_counts().reindex(raw.item_universe, fill_value=0)
    top_tenth = np.sort(counts.to_numpy())[::-1][: len(counts) // 10]
    assert top_tenth.sum() / counts.sum() > 0.25
    per_user = raw.interactions["user_id"].value_counts()
    assert per_user.min() >= 5 and per_user.max() > 3 * per_user.median()
    assert len(raw.interactions) == pytest.approx(1000 * 30, rel=0.1)


# ------------------------------------------------------------ sparse regime
def test_density_sets_the_share_of_observed_pairs_and_is_deterministic(tmp_path: Path) -> None:
    config = SyntheticConfig(users=1500, items=1200, seed=5, image_size=16, density=0.006, **NO_MEDIA)
    raw = generate(config, tmp_path / "a")
    users, _, _ = _indices(raw)
    observed = len(raw.interactions) / (config.users * config.items)
    assert config.interactions_per_user == pytest.approx(7.2)
    assert observed == pytest.approx(0.006, rel=0.1)
    assert np.all(np.bincount(users, minlength=config.users) >= config.min_interactions)
    again = generate(config, tmp_path / "b")
    pd.testing.assert_frame_equal(raw.interactions, again.interactions)


def test_density_is_mean_interactions_over_items_and_the_default_leaves_it_alone(tmp_path: Path) -> None:
    assert SyntheticConfig().density == 0.0
    assert SyntheticConfig().interactions_per_user == SyntheticConfig().mean_interactions
    by_density = generate(replace(SMALL, density=SMALL.mean_interactions / SMALL.items,
                                  mean_interactions=SMALL.min_interactions), tmp_path / "a")
    by_mean = generate(SMALL, tmp_path / "b")
    pd.testing.assert_frame_equal(by_density.interactions, by_mean.interactions)


@pytest.mark.parametrize("density", [-0.1, 1.5, 0.001])
def test_bad_density_raises_an_error_naming_it(density: float) -> None:
    # 0.001 of 400 items is 0.4 interactions per user, under min_interactions
    with pytest.raises(GraphrecError, match="'density'"):
        SyntheticConfig(density=density)


def test_density_is_a_typed_reader_option() -> None:
    from graphrec.data.convert import reader_option_values

    assert reader_option_values("synthetic", {"density": "0.0015"}) == {"density": 0.0015}


def test_content_still_ranks_far_better_than_random_at_sparse_density(tmp_path: Path) -> None:
    config = SyntheticConfig(users=2500, items=2000, seed=9, image_size=16, cold_fraction=0.2, density=0.004,
                             **NO_MEDIA)
    raw = generate(config, tmp_path)
    users, items, split = _indices(raw)
    assert len(raw.interactions) / (config.users * config.items) < 0.005
    shape = (config.users, config.items)

    def matrix(names: tuple[str, ...]) -> sp.csr_matrix:
        mask = np.isin(split, names)
        return sp.csr_matrix((np.ones(mask.sum()), (users[mask], items[mask])), shape=shape)

    scores = _content_scores(raw, matrix(("train",)))
    seen = matrix(("train", "valid")).toarray() > 0
    truth = matrix(("test",)).toarray() > 0
    cold = raw.items["cold"].to_numpy()
    for name, pool in (("cold", cold), ("warm", ~cold)):
        recall, random = _recall_at_20(scores, pool[None, :] & ~seen, truth & pool[None, :])
        assert recall >= 2 * random, (name, recall, random)
