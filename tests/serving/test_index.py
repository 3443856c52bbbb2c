"""Embedding export and the top-k index on real trained embeddings (ml-100k LightGCN)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from graphrec.data.convert import ConvertConfig, convert
from graphrec.errors import DatasetExistsError, GraphrecError
from graphrec.serving import EmbeddingIndex, build_index, export_embeddings, load_embeddings
from graphrec.training.run import ModelConfig, TrainConfig, train


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    dataset = convert("movielens", shared_data / "ml-100k", root / "ml",
                      ConvertConfig(min_rating=3, split="random")).dataset
    return train(dataset, ModelConfig("lightgcn", dim=16), TrainConfig(epochs=2, progress=False, batch_size=4096),
                 out=root / "run", log=lambda _: None)


@pytest.fixture(scope="module")
def embeddings(run):
    user_emb, item_emb = run.embeddings()
    return user_emb.numpy(), item_emb.numpy(), run.dataset.items["item_id"].astype(str).to_numpy()


def _brute_force(queries: np.ndarray, vectors: np.ndarray, k: int,
                 exclude: list[set[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    if exclude is not None:
        for row, items in enumerate(exclude):
            scores[row, sorted(items)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


# --------------------------------------------------------------------------- export
@pytest.mark.parametrize("fmt", ["parquet", "npy"])
def test_export_round_trip_keeps_original_ids_and_values(run, tmp_path, fmt):
    out = export_embeddings(run, tmp_path / "emb", format=fmt)
    loaded = load_embeddings(out)
    user_emb, item_emb = run.embeddings()
    dataset = run.dataset
    assert loaded.users.shape == (dataset.num_users, 16) and loaded.items.shape == (dataset.num_items, 16)
    assert loaded.user_ids.tolist() == dataset.users["user_id"].astype(str).tolist()
    assert loaded.item_ids.tolist() == dataset.items["item_id"].astype(str).tolist()
    # Equal to rounding: the export ran its own forward pass, and on a GPU two passes agree to
    # the last bits only (on the CPU they agree exactly).
    np.testing.assert_allclose(loaded.users, user_emb.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(loaded.items, item_emb.numpy(), rtol=0, atol=1e-6)
    manifest = json.loads((out / "embeddings.json").read_text())
    assert manifest["format"] == fmt and manifest["dim"] == 16 and manifest["model"] == "lightgcn"


def test_parquet_export_is_readable_without_graphrec(run, tmp_path):
    out = export_embeddings(run, tmp_path / "emb")
    table = pq.read_table(out / "items.parquet")
    assert table.schema.field("embedding").type.list_size == 16
    frame = table.to_pandas()
    title_of = dict(zip(run.dataset.items["item_id"].astype(str), run.dataset.items["title"]))
    star_wars = frame.loc[frame["item_id"] == "50"]
    assert title_of["50"].startswith("Star Wars")
    np.testing.assert_allclose(np.stack(star_wars["embedding"].to_numpy())[0],
                               run.embeddings()[1][int(star_wars["item"].iat[0])].numpy(), rtol=0, atol=1e-6)
    users = pd.read_parquet(out / "users.parquet")
    assert users["user_id"].tolist() == run.dataset.users["user_id"].astype(str).tolist()


def test_export_is_atomic_and_refuses_to_overwrite(run, tmp_path):
    out = export_embeddings(run, tmp_path / "emb", format="npy")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(DatasetExistsError):
        export_embeddings(run, out, format="parquet")
    assert sorted(p.name for p in out.iterdir()) == before
    with pytest.raises(GraphrecError, match="unknown embedding format 'csv'"):
        export_embeddings(run, tmp_path / "other", format="csv")
    assert not (tmp_path / "other").exists()
    export_embeddings(run, out, format="parquet", overwrite=True)
    assert (out / "items.parquet").is_file() and not (out / "items.npy").exists()


# ---------------------------------------------------------------------------- index
def test_exact_backend_is_brute_force(embeddings):
    user_emb, item_emb, item_ids = embeddings
    index = EmbeddingIndex.build(item_emb, item_ids, backend="exact")
    scores, indices = index.search(user_emb, 10)
    expected_scores, expected = _brute_force(user_emb, item_emb, 10)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    assert index.recall_against_exact(user_emb, 10) == 1.0


def test_faiss_flat_index_is_exact_on_a_small_catalogue(embeddings):
    user_emb, item_emb, item_ids = embeddings
    index = EmbeddingIndex.build(item_emb, item_ids, backend="faiss")
    assert index.kind == "IndexFlatIP"
    _, indices = index.search(user_emb, 10)
    np.testing.assert_array_equal(indices, _brute_force(user_emb, item_emb, 10)[1])


def test_ivf_recall_against_exact_search(embeddings, record_property):
    """IVF recall@10 on real LightGCN item embeddings, queried with the users' own embeddings."""
    user_emb, item_emb, item_ids = embeddings
    index = EmbeddingIndex.build(item_emb, item_ids, backend="faiss", nlist=16, nprobe=8)
    assert index.kind == "IndexIVFFlat"
    recall = index.recall_against_exact(user_emb, 10)
    # recomputed by hand from the two result lists
    _, approximate = index.search(user_emb, 10)
    _, exact = _brute_force(user_emb, item_emb, 10)
    by_hand = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approximate.tolist(), exact.tolist())])
    assert recall == pytest.approx(by_hand)
    curve = {}
    for nprobe in (1, 2, 4, 8, 16):
        index.nprobe = nprobe
        curve[nprobe] = index.recall_against_exact(user_emb, 10)
    print(f"IVF (nlist=16) recall@10 by nprobe on ml-100k LightGCN: {curve}")
    record_property("ivf_recall_at_10", curve)
    assert recall >= 0.9
    assert curve[1] < curve[16]
    assert curve[16] == 1.0  # probing every cell is an exhaustive search


def test_save_and_load_give_the_same_results(embeddings, tmp_path):
    user_emb, item_emb, item_ids = embeddings
    exclude = [set(range(user, user + 30)) for user in range(len(user_emb))]
    for name, options in {"exact": dict(backend="exact"), "flat": dict(backend="faiss"),
                          "ivf": dict(backend="faiss", nlist=16, nprobe=5),
                          "cosine": dict(backend="faiss", metric="cosine", nlist=8, nprobe=3)}.items():
        index = EmbeddingIndex.build(item_emb, item_ids, **options)
        loaded = EmbeddingIndex.load(index.save(tmp_path / name))
        assert (loaded.kind, loaded.metric, loaded.nlist, loaded.nprobe) == (index.kind, index.metric, index.nlist,
                                                                             index.nprobe)
        assert loaded.item_ids.tolist() == item_ids.tolist()
        for before, after in zip(index.search(user_emb, 20, exclude), loaded.search(user_emb, 20, exclude)):
            np.testing.assert_array_equal(before, after)
        np.testing.assert_array_equal(loaded.vectors, index.vectors)


def test_exclusion_removes_seen_items_and_keeps_the_best_of_the_rest(run, embeddings):
    user_emb, item_emb, item_ids = embeddings
    seen = run.dataset.csr(["train", "valid", "test"])
    exclude = [set(seen[user].indices.tolist()) for user in range(len(user_emb))]
    exact = EmbeddingIndex.build(item_emb, item_ids, backend="exact")
    scores, indices = exact.search(user_emb, 20, exclude)
    expected_scores, expected = _brute_force(user_emb, item_emb, 20, exclude)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    ivf = EmbeddingIndex.build(item_emb, item_ids, backend="faiss", nlist=16, nprobe=4)
    scores, indices = ivf.search(user_emb, 20, exclude)
    for row, items in enumerate(exclude):
        assert not set(indices[row].tolist()) & items
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_k_beyond_what_is_left_pads_with_minus_one(embeddings):
    _, item_emb, item_ids = embeddings
    queries = item_emb[:2]
    index = EmbeddingIndex.build(item_emb, item_ids, backend="exact")
    everything_but_five = set(range(5, len(item_ids)))
    scores, indices = index.search(queries, len(item_ids) + 10, exclude=[everything_but_five, set()])
    assert indices.shape == (2, len(item_ids))
    assert sorted(indices[0, :5].tolist()) == [0, 1, 2, 3, 4]
    assert (indices[0, 5:] == -1).all() and np.isneginf(scores[0, 5:]).all()
    assert sorted(indices[1].tolist()) == list(range(len(item_ids)))


def test_cosine_metric_ranks_by_cosine(embeddings):
    user_emb, item_emb, item_ids = embeddings
    index = EmbeddingIndex.build(item_emb, item_ids, backend="exact", metric="cosine")
    scores, indices = index.search(user_emb[:50], 10)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    expected_scores, expected = _brute_force(unit(user_emb[:50]), unit(item_emb), 10)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
    assert scores.max() <= 1 + 1e-6


def test_build_index_from_a_run_tunes_nprobe_and_reports_recall(run, tmp_path):
    path, stats = build_index(run.path, out=tmp_path / "ivf", nlist=32, k=10, target_recall=0.95)
    print(f"build_index stats: {stats}")
    assert stats["kind"] == "IndexIVFFlat" and stats["num_items"] == run.dataset.num_items
    assert stats["recall@10"] >= 0.95 or stats["nprobe"] == 32
    assert stats["num_queries"] == run.dataset.num_users
    index = EmbeddingIndex.load(path)
    assert index.nprobe == stats["nprobe"]
    user_emb = run.embeddings()[0].numpy()
    assert index.recall_against_exact(user_emb, 10) == pytest.approx(stats["recall@10"])
    assert json.loads((path / "index.json").read_text())["stats"]["recall@10"] == stats["recall@10"]
    # the default destination is inside the run, and it is not silently replaced
    default, flat = build_index(run.path)
    assert default == run.path / "index" and flat["recall@10"] == 1.0
    with pytest.raises(DatasetExistsError):
        build_index(run.path)
    # a recall target where nothing is tuned is refused, not ignored
    for options, needle in (({"target_recall": 0.9}, "this one is IndexFlatIP, which searches exactly"),
                            ({"target_recall": 0.9, "nlist": 32, "nprobe": 4}, "not both"),
                            ({"target_recall": 1.5, "nlist": 32}, "must lie in")):
        with pytest.raises(GraphrecError, match=needle):
            build_index(run.path, out=tmp_path / "refused", **options)
        assert not (tmp_path / "refused").exists()


def test_bad_index_requests_are_refused(embeddings, tmp_path):
    user_emb, item_emb, item_ids = embeddings
    with pytest.raises(GraphrecError, match="unknown index backend 'annoy'"):
        EmbeddingIndex.build(item_emb, item_ids, backend="annoy")
    with pytest.raises(GraphrecError, match="nprobe must be between 1 and nlist"):
        EmbeddingIndex.build(item_emb, item_ids, backend="faiss", nlist=8, nprobe=9)
    with pytest.raises(GraphrecError, match="item ids"):
        EmbeddingIndex.build(item_emb, item_ids[:-1])
    broken = item_emb.copy()
    broken[7, 3] = np.nan
    with pytest.raises(GraphrecError, match=f"'{item_ids[7]}' \\(row 7\\)"):
        EmbeddingIndex.build(broken, item_ids)
    index = EmbeddingIndex.build(item_emb, item_ids, backend="exact")
    with pytest.raises(GraphrecError, match="dimension 8"):
        index.search(user_emb[:, :8], 5)
    with pytest.raises(GraphrecError, match="2 sets for 3 queries"):
        index.search(user_emb[:3], 5, exclude=[set(), set()])
    with pytest.raises(GraphrecError, match=r"index\.json is missing"):
        EmbeddingIndex.load(tmp_path)
