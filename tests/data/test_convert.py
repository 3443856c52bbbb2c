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
    assert result.dataset.num_interactions == int((ratings >= 4).sum())
    assert result.reports[0].removed_interactions == int((ratings < 4).sum())
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
    assert len(cold) >= int(round(0.2 * result.dataset.num_items))
    assert result.dataset.manifest["split"]["cold_items"] == int(round(0.2 * result.dataset.num_items))


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
    with pytest.raises(GraphrecError, match="unknown format 'movielen'.*known formats"):
        convert("movielen", tmp_path, tmp_path / "out")
