"""Cold-start users at conversion (``--cold-users F``), on the real MovieLens-100K and its ``u.user``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrec.data.convert import ConvertConfig, build_dataset, convert
from graphrec.data.dataset import Dataset, load_dataset
from graphrec.data.holdout import merge_validation_into_training
from graphrec.data.raw import RawDataset, interactions_frame
from graphrec.errors import ConfigError
from graphrec.evaluation import cold_users
from tests._cli import assert_clean_error, graphrec

SEED = 5


@pytest.fixture(scope="module")
def ml100k(shared_data: Path) -> Path:
    return shared_data / "ml-100k"


@pytest.fixture(scope="module")
def converted(ml100k: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Dataset, str]:
    """ml-100k converted with and without 10% cold users, same seed; and the cold conversion's summary."""
    root = tmp_path_factory.mktemp("cold-users")
    cold = convert("movielens", ml100k, root / "cold", ConvertConfig(cold_users=0.1, seed=SEED))
    convert("movielens", ml100k, root / "warm", ConvertConfig(seed=SEED))
    return load_dataset(root / "cold"), load_dataset(root / "warm"), cold.summary_text()


def split_of(dataset: Dataset) -> pd.Series:
    inter = dataset.interactions
    return pd.Series(inter["split"].astype(str).to_numpy(),
                     index=pd.MultiIndex.from_arrays([inter["user"], inter["item"]]))


def test_a_tenth_of_the_users_become_cold_with_no_training_interaction(converted):
    dataset, warm, _ = converted
    cold = cold_users(dataset)
    assert len(cold) == round(943 * 0.1) == 94  # every ml-100k user has age, gender, occupation and zip
    assert dataset.num_users == warm.num_users == 943 and dataset.num_interactions == warm.num_interactions
    users, _ = dataset.pairs("train")
    assert not np.isin(cold, users).any()
    assert set(np.unique(users)) == set(range(943)) - set(cold.tolist())
    split = dataset.manifest["split"]
    assert (split["cold_users"], split["cold_user_fraction"], split["cold_user_eligible"]) == (94, 0.1, 943)
    assert split["users_without_training"] == 94


def test_warm_users_keep_their_split_and_cold_users_move_half_of_their_training_to_valid(converted):
    dataset, warm, _ = converted
    after, before = split_of(dataset), split_of(warm)
    cold = set(cold_users(dataset).tolist())
    is_cold = after.index.get_level_values(0).isin(list(cold))
    assert (after[~is_cold] == before[~is_cold]).all()
    # Held-out interactions of cold users stay where the split put them; their training ones move.
    was_held_out = is_cold & (before != "train").to_numpy()
    assert (after[was_held_out] == before[was_held_out]).all()
    moved = after[is_cold & (before == "train").to_numpy()]
    per_user = moved.groupby(level=0).value_counts().unstack(fill_value=0)
    sizes = per_user.sum(axis=1)
    assert (per_user["valid"] == sizes // 2).all() and (per_user["test"] == sizes - sizes // 2).all()


def test_the_report_says_how_many_users_and_interactions_moved(converted):
    dataset, warm, summary = converted
    moved = int(((split_of(warm) == "train") & (split_of(dataset) != "train")).sum())
    assert (f"94 cold users (10% of the 943 users with a non-empty attribute) held out of training: their "
            f"{moved:,} training interactions moved to valid") in summary
    assert any(note.startswith("94 cold users") for note in dataset.manifest["notes"])
    assert dataset.manifest["config"]["cold_users"] == 0.1


def test_cold_users_are_chosen_by_the_seed(ml100k, converted, tmp_path):
    dataset, _, _ = converted
    again = convert("movielens", ml100k, tmp_path / "again", ConvertConfig(cold_users=0.1, seed=SEED)).dataset
    other = convert("movielens", ml100k, tmp_path / "other", ConvertConfig(cold_users=0.1, seed=SEED + 1)).dataset
    assert np.array_equal(cold_users(again), cold_users(dataset))
    assert (again.interactions["split"] == dataset.interactions["split"]).all()
    assert not np.array_equal(cold_users(other), cold_users(dataset))


@pytest.mark.parametrize("split", ["temporal", "leave-last"])
def test_under_a_time_ordered_split_a_cold_user_validates_on_the_earlier_half(ml100k, tmp_path, split):
    config = ConvertConfig(split=split, cold_users=0.1, seed=SEED)
    dataset = convert("movielens", ml100k, tmp_path / "t", config).dataset
    base = convert("movielens", ml100k, tmp_path / "b", ConvertConfig(split=split, seed=SEED)).dataset
    inter, before = dataset.interactions, base.interactions["split"].astype(str).to_numpy()
    moved = inter[(before == "train") & (inter["split"].astype(str).to_numpy() != "train")]
    assert set(moved["user"]) <= set(cold_users(dataset).tolist())
    latest_valid = moved[moved["split"] == "valid"].groupby("user")["timestamp"].max()
    earliest_test = moved[moved["split"] == "test"].groupby("user")["timestamp"].min()
    both = latest_valid.index.intersection(earliest_test.index)
    assert len(both) > 50 and (latest_valid[both] <= earliest_test[both]).all()
    assert any("the earlier half (rounded down) to valid" in note for note in dataset.manifest["notes"])


def test_a_given_split_keeps_its_evaluation_interactions(tmp_path):
    # The synthetic set's split is its own (given); its users table has an attribute per user.
    options = {"users": 200, "items": 120}
    dataset = convert("synthetic", "-", tmp_path / "c", ConvertConfig(cold_users=0.2, seed=1),
                      reader_options=options).dataset
    base = convert("synthetic", "-", tmp_path / "b", ConvertConfig(seed=1), reader_options=options).dataset
    assert dataset.manifest["split"]["protocol"] == "given" and len(cold_users(dataset)) == 40
    before, after = split_of(base), split_of(dataset)
    held_out = (before != "train").to_numpy()
    assert (after[held_out] == before[held_out]).all()


def test_a_kcore_runs_first_and_drops_no_user_for_being_cold(ml100k, tmp_path):
    cored = convert("movielens", ml100k, tmp_path / "k", ConvertConfig(kcore=20, seed=SEED)).dataset
    cold = convert("movielens", ml100k, tmp_path / "kc", ConvertConfig(kcore=20, cold_users=0.1, seed=SEED)).dataset
    assert cold.num_users == cored.num_users < 943 and cold.num_interactions == cored.num_interactions
    assert len(cold_users(cold)) == round(cored.num_users * 0.1)
    assert any("filters ran before the cold users were chosen" in note for note in cold.manifest["notes"])


def raw_with_users(users: pd.DataFrame | None) -> RawDataset:
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 20, 400), rng.integers(0, 30, 400)
    return RawDataset(interactions_frame([f"u{x}" for x in u], [f"i{x}" for x in i]), users=users)


def test_without_user_features_cold_users_are_refused():
    with pytest.raises(ConfigError, match="no user attributes") as no_table:
        build_dataset(raw_with_users(None), ConvertConfig(cold_users=0.1))
    assert no_table.value.field == "cold_users"
    ids = pd.DataFrame({"user_id": [f"u{x}" for x in range(20)]})
    with pytest.raises(ConfigError, match="no user attributes"):
        build_dataset(raw_with_users(ids), ConvertConfig(cold_users=0.1))
    empty = ids.assign(age=np.nan, city=" ")
    with pytest.raises(ConfigError, match="none of the 20 users has a non-empty attribute"):
        build_dataset(raw_with_users(empty), ConvertConfig(cold_users=0.1))


def test_only_users_with_features_can_become_cold():
    users = pd.DataFrame({"user_id": [f"u{x}" for x in range(20)],
                          "age": [30.0 if x < 10 else np.nan for x in range(20)]})
    dataset = build_dataset(raw_with_users(users), ConvertConfig(cold_users=0.5, seed=2)).dataset
    cold = cold_users(dataset)
    assert len(cold) == 5 and dataset.manifest["split"]["cold_user_eligible"] == 10
    assert set(dataset.users.loc[cold, "user_id"]) <= {f"u{x}" for x in range(10)}


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_a_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\)") as error:
        ConvertConfig(cold_users=fraction)
    assert error.value.field == "cold_users"


def test_the_cli_names_the_option(ml100k, tmp_path):
    completed = graphrec("convert", "movielens", ml100k, tmp_path / "d", "--cold-users", "1.5")
    assert_clean_error(completed, 2, "--cold-users: must be in [0, 1), got 1.5")
    assert not (tmp_path / "d").exists()
    lightgcn = tmp_path / "lg"
    lightgcn.mkdir()
    (lightgcn / "train.txt").write_text("0 1 2 3\n1 2 3 4\n2 0 1\n")
    (lightgcn / "test.txt").write_text("0 4\n1 0\n2 3\n")
    completed = graphrec("convert", "lightgcn", lightgcn, tmp_path / "l", "--cold-users", "0.3")
    assert_clean_error(completed, 2, "--cold-users: needs user features")


def test_refit_keeps_cold_users_cold(converted):
    dataset, _, _ = converted
    merged = merge_validation_into_training(dataset)
    assert np.array_equal(cold_users(merged), cold_users(dataset))
    cold = cold_users(dataset)
    assert merged.csr("valid")[cold].nnz == dataset.csr("valid")[cold].nnz > 0
    assert merged.split_counts()["valid"] == dataset.csr("valid")[cold].nnz
