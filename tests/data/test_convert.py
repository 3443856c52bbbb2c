"""The conversion pipeline: filters, k-core, splits, indexing, atomic writes, summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphrec.data.convert import ConvertConfig, build_dataset, convert
from graphrec.data.dataset import load_dataset
from graphrec.data.filtering import kcore
from graphrec.data.raw import RawDataset, interactions_frame
from graphrec.data.splitting import split_leave_last, split_random, split_temporal
from graphrec.errors import DatasetExistsError, GraphrecError


def random_raw(seed: int = 0, n: int = 3000, users: int = 120, items: int = 80) -> RawDataset:
    rng = np.random.default_rng(seed)
    u = rng.zipf(1.6, n) % users
    i = rng.zipf(1.4, n) % items
    return RawDataset(interactions_frame([f"u{x}" for x in u], [f"i{x}" for x in i],
                                         rating=rng.integers(1, 6, n), timestamp=rng.integers(0, 10_000, n)))


def slow_kcore(pairs: list[tuple[str, str]], k: int) -> set[tuple[str, str]]:
    """Reference: remove one under-degree node at a time until none is left."""
    alive = set(pairs)
    changed = True
    while changed:
        changed = False
        user_degree: dict[str, int] = {}
        item_degree: dict[str, int] = {}
        for u, i in alive:
            user_degree[u] = user_degree.get(u, 0) + 1
            item_degree[i] = item_degree.get(i, 0) + 1
        for u, i in list(alive):
            if user_degree[u] < k or item_degree[i] < k:
                alive.discard((u, i))
                changed = True
                break
    return alive


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_kcore_matches_slow_reference(k):
    raw = random_raw(seed=k, n=600)
    frame = raw.interactions.drop_duplicates(["user_id", "item_id"])
    fast, report = kcore(frame, k)
    expected = slow_kcore(list(zip(frame["user_id"], frame["item_id"])), k)
    assert set(zip(fast["user_id"], fast["item_id"])) == expected
    assert report.removed_interactions == len(frame) - len(expected)
    if len(fast):
        assert fast.groupby("user_id").size().min() >= k
        assert fast.groupby("item_id").size().min() >= k


def test_duplicates_reported_and_removed():
    frame = interactions_frame(["a", "a", "a", "b"], ["x", "x", "y", "x"], rating=[5, 4, 3, 2],
                               timestamp=[3, 1, 2, 4])
    result = build_dataset(RawDataset(frame), ConvertConfig(split="random"))
    assert result.dataset.num_interactions == 3
    (report,) = [r for r in result.reports if r.step == "deduplicate"]
    assert report.removed_interactions == 1
    kept = result.dataset.interactions
    # the earliest (timestamp 1, rating 4) of the repeated pair is kept
    assert kept.loc[(kept["user"] == 0) & (kept["item"] == 0), "rating"].item() == 4
    assert "repeated" in result.summary_text()


def test_cross_split_duplicates_stay_in_the_earliest_split():
    frame = interactions_frame(["a", "a", "b"], ["x", "x", "y"], split=["test", "train", "train"])
    result = build_dataset(RawDataset(frame), ConvertConfig(split="given"))
    assert result.dataset.split_counts() == {"train": 2, "valid": 0, "test": 0}
    assert [r.step for r in result.reports] == ["deduplicate_across_splits"]


def test_min_rating_filter_counts_and_requires_ratings():
    raw = random_raw()
    ratings = raw.interactions["rating"]
    result = build_dataset(raw, ConvertConfig(min_rating=4, dedupe=False))
    assert result.reports[0].removed_interactions == int((ratings < 4).sum())
    # without de-duplication, only the repeats a random split scattered over two splits go
    across = sum(r.removed_interactions for r in result.reports if r.step == "deduplicate_across_splits")
    assert result.dataset.num_interactions == int((ratings >= 4).sum()) - across
    no_ratings = RawDataset(interactions_frame(["a"], ["x"]))
    with pytest.raises(GraphrecError, match="needs ratings"):
        build_dataset(no_ratings, ConvertConfig(min_rating=3))


def test_random_split_is_per_user_deterministic_and_keeps_train():
    users = np.repeat(np.arange(200), np.random.default_rng(1).integers(1, 40, 200))
    a = split_random(users, (0.8, 0.1, 0.1), np.random.default_rng(7))
    b = split_random(users, (0.8, 0.1, 0.1), np.random.default_rng(7))
    c = split_random(users, (0.8, 0.1, 0.1), np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    frame = pd.DataFrame({"user": users, "code": a})
    assert (frame[frame.code == 0].groupby("user").size().reindex(range(200), fill_value=0) >= 1).all()
    big = frame.groupby("user").filter(lambda g: len(g) >= 20)
    share = big.groupby("user")["code"].apply(lambda c: (c == 0).mean())
    assert share.between(0.7, 0.9).all()


def test_temporal_and_leave_last_splits():
    timestamps = np.array([5, 1, 9, 3, 7, 2, 8, 4, 6, 0])
    codes = split_temporal(timestamps, (0.6, 0.2, 0.2))
    assert set(timestamps[codes == 0]) == {0, 1, 2, 3, 4, 5}
    assert set(timestamps[codes == 2]) == {8, 9}
    users = np.array([0, 0, 0, 1, 1, 2])
    ts = np.array([3, 1, 2, 10, 5, 4])
    codes = split_leave_last(users, ts)
    assert codes.tolist() == [2, 0, 1, 2, 0, 0]


def test_temporal_split_requires_timestamps():
    raw = RawDataset(interactions_frame(["a", "b"], ["x", "y"]))
    with pytest.raises(GraphrecError, match="timestamp"):
        build_dataset(raw, ConvertConfig(split="temporal"))


def test_cold_items_have_no_training_interactions():
    result = build_dataset(random_raw(n=4000), ConvertConfig(cold_items=0.2, seed=3))
    inter = result.dataset.interactions
    cold = np.setdiff1d(np.arange(result.dataset.num_items), inter.loc[inter.split == "train", "item"])
    assert len(cold) >= round(0.2 * result.dataset.num_items)
    assert result.dataset.manifest["split"]["cold_items"] == round(0.2 * result.dataset.num_items)


def _pairs_by_split(dataset) -> dict[str, set[tuple[int, int]]]:
    inter = dataset.interactions
    return {split: set(zip(part["user"], part["item"])) for split, part in inter.groupby("split", observed=False)}


@pytest.mark.parametrize("split", ["given", "random"])
def test_no_dedupe_keeps_repeats_within_a_split_but_never_across(split):
    rng = np.random.default_rng(5)
    users, items = rng.integers(0, 30, 2000), rng.integers(0, 20, 2000)  # about three draws per pair
    splits = rng.choice(["train", "valid", "test"], 2000, p=[0.8, 0.1, 0.1])
    raw = RawDataset(interactions_frame(users.astype(str), items.astype(str), split=splits))
    result = build_dataset(raw, ConvertConfig(split=split, dedupe=False, seed=1))
    pairs = _pairs_by_split(result.dataset)
    assert not pairs["train"] & pairs["valid"] and not pairs["train"] & pairs["test"]
    assert not pairs["valid"] & pairs["test"]
    (report,) = [r for r in result.reports if r.step == "deduplicate_across_splits"]
    assert result.dataset.num_interactions == 2000 - report.removed_interactions
    assert any("kept within their split" in note for note in result.notes)
    # every pair of the source is still there, in its earliest split
    assert set().union(*pairs.values()) == {(int(u), int(i)) for u, i in zip(users, items)}


def test_cold_items_keep_a_given_evaluation_split():
    rng = np.random.default_rng(2)
    users, items = rng.integers(0, 60, 3000), rng.integers(0, 40, 3000)
    splits = rng.choice(["train", "valid", "test"], 3000, p=[0.7, 0.15, 0.15])
    raw = RawDataset(interactions_frame(users.astype(str), items.astype(str), split=splits))
    plain = build_dataset(raw, ConvertConfig()).dataset.interactions
    cold = build_dataset(raw, ConvertConfig(cold_items=0.25, seed=4)).dataset.interactions
    merged = plain.merge(cold, on=["user", "item"], suffixes=("_given", "_cold"))
    assert len(merged) == len(plain)
    evaluation = merged["split_given"] != "train"
    assert (merged.loc[evaluation, "split_given"] == merged.loc[evaluation, "split_cold"]).all()
    moved = merged[(merged["split_given"] == "train") & (merged["split_cold"] != "train")]
    assert moved["item"].nunique() == 10 and set(moved["split_cold"]) == {"valid", "test"}


def test_cold_items_under_a_temporal_split_validate_early_and_test_late():
    rng = np.random.default_rng(3)
    n = 4000
    raw = RawDataset(interactions_frame(rng.integers(0, 80, n).astype(str), rng.integers(0, 50, n).astype(str),
                                        timestamp=rng.permutation(n)))
    plain = build_dataset(raw, ConvertConfig(split="temporal")).dataset.interactions
    result = build_dataset(raw, ConvertConfig(split="temporal", cold_items=0.2, seed=6))
    merged = plain.merge(result.dataset.interactions, on=["user", "item", "timestamp"], suffixes=("", "_cold"))
    assert len(merged) == len(plain)
    assert (merged.loc[merged.split != "train", "split"] == merged.loc[merged.split != "train", "split_cold"]).all()
    moved = merged[(merged.split == "train") & (merged.split_cold != "train")]
    assert moved["item"].nunique() == 10
    for _, rows in moved.groupby("item"):
        valid = rows.loc[rows.split_cold == "valid", "timestamp"]
        test = rows.loc[rows.split_cold == "test", "timestamp"]
        assert len(test) >= len(valid) and (not len(valid) or valid.max() < test.min())
    assert any("predate the time cut" in note for note in result.notes)


@pytest.mark.parametrize("split", ["given", "leave-last"])
def test_ratios_given_to_a_split_that_ignores_them_is_an_error(split):
    raw = RawDataset(interactions_frame(["a", "a", "a", "b"], ["x", "y", "z", "x"], timestamp=[1, 2, 3, 4],
                                        split=["train", "train", "test", "train"]))
    with pytest.raises(GraphrecError, match="--ratios applies to --split random or temporal"):
        build_dataset(raw, ConvertConfig(split=split, ratios=(0.5, 0.25, 0.25)))
    with pytest.raises(GraphrecError, match="pass --split random to re-split"):
        build_dataset(raw, ConvertConfig(ratios=(0.5, 0.25, 0.25)))
    manifest = build_dataset(raw, ConvertConfig(split=split)).dataset.manifest
    assert manifest["split"]["ratios"] is None


def test_split_notes_and_columns_of_the_source_go_when_it_is_re_split():
    frame = interactions_frame(["a", "a", "b", "b"], ["x", "y", "x", "y"], split=["train", "test", "train", "test"])
    items = pd.DataFrame({"item_id": ["x", "y"], "cold": [False, True]})
    raw = RawDataset(frame, items=items, split_notes=["y is cold"], split_item_columns=("cold",))
    given = build_dataset(raw, ConvertConfig())
    assert "y is cold" in given.notes and "cold" in given.dataset.items.columns
    resplit = build_dataset(raw, ConvertConfig(split="random"))
    assert "y is cold" not in resplit.notes and "cold" not in resplit.dataset.items.columns


@pytest.mark.parametrize("name", ["a/b", "", "..\\x"])
def test_dataset_names_that_are_not_plain_names_are_refused(name):
    with pytest.raises(GraphrecError, match="plain name"):
        ConvertConfig(name=name)


def test_indices_follow_the_universe_then_natural_order():
    frame = interactions_frame(["10", "2", "2"], ["7", "30", "4"])
    raw = RawDataset(frame, user_universe=["99", "10"])
    dataset = build_dataset(raw, ConvertConfig(split="random")).dataset
    assert dataset.users["user_id"].tolist() == ["99", "10", "2"]
    assert dataset.items["item_id"].tolist() == ["4", "7", "30"]  # numeric, not lexicographic


def test_failed_conversion_leaves_nothing(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.txt").write_text("0 1 2\n1 x 3\n")
    (bad / "test.txt").write_text("0 3\n")
    dst = tmp_path / "out"
    with pytest.raises(GraphrecError):
        convert("lightgcn", bad, dst)
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad"]


def test_existing_destination_needs_overwrite(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.txt").write_text("0 1 2\n1 0 2\n")
    (src / "test.txt").write_text("0 0\n1 1\n")
    dst = tmp_path / "out"
    convert("lightgcn", src, dst)
    with pytest.raises(DatasetExistsError):
        convert("lightgcn", src, dst)
    (src / "test.txt").write_text("0 0\n")
    convert("lightgcn", src, dst, overwrite=True)
    assert load_dataset(dst).split_counts()["test"] == 1


def test_unknown_format_is_a_clear_error(tmp_path):
    with pytest.raises(GraphrecError, match=r"unknown format 'movielen'.*known formats"):
        convert("movielen", tmp_path, tmp_path / "out")
