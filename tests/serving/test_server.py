"""``graphrec serve``: a real uvicorn process on 127.0.0.1, talked to over HTTP with httpx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from graphrec.data.convert import convert
from graphrec.serving import build_index, new_user_recommend, recommend
from graphrec.training.run import ModelConfig, TrainConfig, load_run, train

QUIET = dict(log=lambda _: None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(run: Path, *args: str, timeout: float = 90.0):
    """``graphrec serve RUN`` in a subprocess; yields an httpx client once /health answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "graphrec", "serve", str(run), "--port", str(port), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"graphrec serve exited with {process.returncode}:\n{process.stdout.read()}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("graphrec serve did not answer /health in time")
            time.sleep(0.3)
        with httpx.Client(base_url=base, timeout=30) as client:
            client.log = lambda: process  # type: ignore[attr-defined]
            yield client
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        assert "Traceback" not in (output or ""), output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    dataset = convert("synthetic", "-", root / "syn", reader_options={"users": 200, "items": 150}).dataset
    config = TrainConfig(epochs=3, progress=False, batch_size=4096)
    lightgcn = train(dataset, ModelConfig("lightgcn", dim=16, layers=2), config, out=root / "lightgcn", **QUIET)
    gfcf = train(dataset, ModelConfig("gfcf", alpha=0.3, k=32), config, out=root / "gfcf", **QUIET)
    return {"lightgcn": lightgcn, "gfcf": gfcf, "root": root}


@pytest.fixture(scope="module")
def lightgcn_server(runs):
    """One server on the LightGCN run for the tests that only ask it questions (max_k 120 of 150 items)."""
    with server(runs["lightgcn"].path, "--max-k", "120") as client:
        yield client


def test_recommend_matches_the_library_with_original_ids(runs, lightgcn_server):
    run = runs["lightgcn"]
    users = run.dataset.users["user_id"].astype(str).tolist()[:5]
    expected = recommend(run, users, k=10, explain=True)
    client = lightgcn_server
    answer = client.post("/recommend", json={"users": users, "k": 10, "explain": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["k"] == 10 and body["notes"] == []
    for got, want in zip(body["results"], expected, strict=True):
        assert got["user_id"] == want.user_id
        assert got["items"] == want.items
        np.testing.assert_allclose(got["scores"], want.scores, rtol=1e-5)
        assert [e["item_id"] for e in got["explanations"]] == want.items
        assert got["explanations"][0]["because_of"], "an explanation names the user's own training items"
    # exclude_seen=false ranks the items the user has seen too; the default never returns them
    everything = client.post("/recommend", json={"users": users[:2], "k": 20, "exclude_seen": False}).json()
    assert [r["items"] for r in everything["results"]] == [
        r.items for r in recommend(run, users[:2], k=20, explain=False, exclude_seen=False)]
    seen = set(run.dataset.interactions.loc[run.dataset.interactions["user"] == 0, "item"].tolist())
    item_ids = run.dataset.items["item_id"].astype(str).tolist()
    unseen = client.post("/recommend", json={"users": [users[0]], "k": 100}).json()
    assert len(unseen["results"][0]["items"]) == min(100, 150 - len(seen))
    assert not {item_ids.index(i) for i in unseen["results"][0]["items"]} & seen

    schema = client.get("/openapi.json").json()
    assert {"/recommend", "/recommend/new-user", "/similar-items", "/health", "/info"} <= set(schema["paths"])
    info = client.get("/info").json()
    assert info["model"]["name"] == "lightgcn" and info["dataset"]["users"] == 200
    assert info["dataset"]["items"] == 150 and info["search"] == "exact" and "features" in info


def test_errors_are_404_422_and_capped_k_never_a_traceback(runs, lightgcn_server):
    run = runs["lightgcn"]
    user = str(run.dataset.users["user_id"].iloc[0])
    client = lightgcn_server
    missing = client.post("/recommend", json={"users": [user, "no-such-user"], "k": 5})
    assert missing.status_code == 404 and "'no-such-user'" in missing.json()["detail"]
    missing_item = client.post("/similar-items", json={"item": "no-such-item"})
    assert missing_item.status_code == 404 and "'no-such-item'" in missing_item.json()["detail"]
    missing_new = client.post("/recommend/new-user", json={"items": ["item_00001", "nope"]})
    assert missing_new.status_code == 404 and "'nope'" in missing_new.json()["detail"]
    for body in ({"users": user}, {"users": [user], "k": 0}, {"users": []}, {"users": [user], "kk": 3}):
        malformed = client.post("/recommend", json=body)
        assert malformed.status_code == 422, (body, malformed.text)
    not_json = client.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    capped = client.post("/recommend", json={"users": [user], "k": 1000, "exclude_seen": False}).json()
    assert capped["k"] == 120 and len(capped["results"][0]["items"]) == 120
    assert "k=1000" in capped["notes"][0] and "capped to 120" in capped["notes"][0]
    for response in (missing, missing_item, not_json):
        assert "Traceback" not in response.text


def test_new_user_and_similar_items(runs, lightgcn_server):
    run = runs["lightgcn"]
    items = run.dataset.items["item_id"].astype(str).tolist()
    given = items[3:8]
    expected = new_user_recommend(run, given, k=10, explain=False)
    client = lightgcn_server
    folded = client.post("/recommend/new-user", json={"items": given, "k": 10}).json()
    assert folded["result"]["items"] == expected.items
    assert not set(folded["result"]["items"]) & set(given)
    similar = client.post("/similar-items", json={"item": items[0], "k": 5}).json()
    _, item_emb = run.embeddings()
    normalised = item_emb / item_emb.norm(dim=1, keepdim=True)
    cosine = (normalised @ normalised[0]).numpy()
    cosine[0] = -np.inf
    assert similar["items"] == [items[i] for i in np.argsort(-cosine, kind="stable")[:5]]


def test_graph_filter_scores_through_its_scorer_and_folds_in_by_its_own_filter(runs):
    run = runs["gfcf"]
    users = run.dataset.users["user_id"].astype(str).tolist()[:3]
    expected = recommend(run, users, k=10, explain=True)
    train_rows = run.dataset.csr("train")
    with server(run.path) as client:
        body = client.post("/recommend", json={"users": users, "k": 10, "explain": True}).json()
        assert [r["items"] for r in body["results"]] == [r.items for r in expected]
        # explained by the training items that contribute most, as in-process
        assert [r["explanations"] for r in body["results"]] == [
            [e.to_dict() for e in r.explanations] for r in expected]
        assert body["results"][0]["explanations"][0]["because_of_measure"] == "contribution"
        # the new user with user 0's training items gets user 0's own GF-CF ranking (the filter is a
        # function of the user's row alone)
        item_ids = run.dataset.items["item_id"].astype(str).to_numpy()
        history = item_ids[train_rows[0].indices].tolist()
        folded = client.post("/recommend/new-user", json={"items": history, "k": 10}).json()
        assert client.get("/info").json()["fold_in"] == "the model's own filter"
    scores = run.model.scorer()(torch.tensor([0]))[0].numpy().copy()
    scores[train_rows[0].indices] = -np.inf
    assert folded["result"]["items"][:5] == item_ids[np.argsort(-scores, kind="stable")[:5]].tolist()


def test_concurrent_requests_are_batched_and_all_answered(runs, lightgcn_server):
    run = runs["lightgcn"]
    users = run.dataset.users["user_id"].astype(str).tolist()
    expected = {r.user_id: r.items for r in recommend(run, users[:64], k=20, explain=False)}
    client = lightgcn_server
    before = client.get("/health").json()

    async def burst(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            return list(await asyncio.gather(*(client.post("/recommend", json={"users": [user], "k": 20})
                                               for user in users[:64])))

    responses = asyncio.run(burst(str(client.base_url)))
    health = client.get("/health").json()
    assert all(response.status_code == 200 for response in responses)
    for response in responses:
        result = response.json()["results"][0]
        assert result["items"] == expected[result["user_id"]]
    assert health["requests"] - before["requests"] == 64
    assert health["batches"] - before["batches"] < 64, "concurrent requests should share scoring batches"


def test_uses_the_faiss_index_when_graphrec_index_built_one(runs, tmp_path):
    pytest.importorskip("faiss")
    source = runs["lightgcn"].path
    run_dir = tmp_path / "indexed"
    shutil.copytree(source, run_dir)
    build_index(run_dir, backend="faiss")
    run = load_run(run_dir)
    users = run.dataset.users["user_id"].astype(str).tolist()[:4]
    expected = recommend(run, users, k=10, explain=False)
    with server(run_dir) as client:
        search = client.get("/info").json()["search"]
        assert search["backend"] == "faiss"
        body = client.post("/recommend", json={"users": users, "k": 10}).json()
    # a flat faiss index over 150 items is exact: the same items as exact search
    assert [r["items"] for r in body["results"]] == [r.items for r in expected]


@pytest.mark.slow  # a server and a training subprocess: about 40 s on two busy cores
def test_keeps_answering_while_its_run_directory_is_rewritten(runs, tmp_path):
    run_dir = tmp_path / "rewritten"
    shutil.copytree(runs["lightgcn"].path, run_dir)
    user = str(runs["lightgcn"].dataset.users["user_id"].iloc[0])
    with server(run_dir) as client:
        before = client.post("/recommend", json={"users": [user], "k": 10}).json()
        # another process retrains into the directory the server was started on
        trainer = subprocess.Popen([sys.executable, "-m", "graphrec", "train", json.loads(
            (run_dir / "run.json").read_text())["dataset"], "--model", "mf", "--dim", "8", "--epochs", "3",
            "--no-progress", "--overwrite", "--out", str(run_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        answers = []
        while trainer.poll() is None:
            answers.append(client.post("/recommend", json={"users": [user], "k": 10}))
            answers.append(client.post("/recommend", json={"users": ["nobody"], "k": 10}))
            time.sleep(0.05)
        assert trainer.returncode == 0, trainer.stderr.read()
        after = client.post("/recommend", json={"users": [user], "k": 10}).json()
        info = client.get("/info").json()
    assert len(answers) >= 4
    assert all(a.status_code == (404 if i % 2 else 200) for i, a in enumerate(answers))
    assert after == before and info["model"]["name"] == "lightgcn", "answers come from the run as it was loaded"


@pytest.mark.slow  # two uvicorn workers each load the run: about 60 s on two busy cores
def test_several_workers_and_a_missing_run_is_a_clear_error(runs, tmp_path):
    user = str(runs["lightgcn"].dataset.users["user_id"].iloc[0])
    with server(runs["lightgcn"].path, "--workers", "2") as client:
        answers = [client.post("/recommend", json={"users": [user], "k": 5}) for _ in range(6)]
    assert all(a.status_code == 200 for a in answers)
    assert len({json.dumps(a.json()) for a in answers}) == 1
    failed = subprocess.run([sys.executable, "-m", "graphrec", "serve", str(tmp_path / "nothing")],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2 and "is not a graphrec run directory" in failed.stderr
    assert "Traceback" not in failed.stderr


# ------------------------------------------------------------------ users placed by their features
@pytest.fixture(scope="module")
def cold_runs(shared_data, tmp_path_factory):
    """VBPR and ModalityGAT with user sources on ml-100k (age, gender, occupation), 10% of its users cold."""
    from _cold_users import ml100k_cold_users

    root = tmp_path_factory.mktemp("cold-users")
    dataset, cold = ml100k_cold_users(shared_data, root / "converted")
    path = dataset.save(root / "ml-100k-cold")
    config = TrainConfig(epochs=2, progress=False, batch_size=4096, eval_ks=(20,))
    vbpr = train(path, ModelConfig("vbpr", dim=16, user_entities=True), config, out=root / "vbpr", **QUIET)
    gat = train(path, ModelConfig("gat", dim=16, layers=1), config, out=root / "gat", **QUIET)
    user_ids = dataset.users["user_id"].astype(str).to_numpy()
    return {"vbpr": vbpr, "gat": gat, "cold": [str(user) for user in user_ids[cold]], "cold_index": cold}


def _attributes_of(run, user_index: int) -> dict:
    record = run.dataset.users.iloc[int(user_index)]
    return {"age": int(record["age"]), "gender": str(record["gender"]), "occupation": str(record["occupation"])}


@pytest.mark.slow  # trains two models on ml-100k and starts a server
def test_cold_and_new_users_from_their_attributes_over_http(cold_runs):
    from graphrec.serving import attributes_recommend

    run = cold_runs["gat"]
    cold_id, cold_index = cold_runs["cold"][0], cold_runs["cold_index"][0]
    given = _attributes_of(run, cold_index)
    expected = attributes_recommend(run, given, k=10, explain=True)
    # the new user with a cold user's attributes is that cold user, its seen items aside
    assert expected.items == recommend(run, [cold_id], k=10, explain=False, exclude_seen=False)[0].items
    why = expected.explanations[0]
    assert set(why.user_sources) == {"average user", "user_age", "user_gender", "user_occupation"}
    assert sum(why.user_sources.values()) == pytest.approx(expected.scores[0], rel=1e-4, abs=1e-6)
    assert sum(why.user_source_weights.values()) == pytest.approx(1.0)
    with server(run.path) as client:
        body = client.post("/recommend/new-user", json={"attributes": given, "k": 10, "explain": True}).json()
        assert body["result"]["items"] == expected.items
        assert body["result"]["explanations"][0]["user_sources"] == pytest.approx(why.user_sources, rel=1e-4)
        cold = client.post("/recommend", json={"users": [cold_id], "k": 10, "explain": True}).json()
        assert cold["results"][0]["explanations"][0]["user_source_weights"] is not None
        unknown = client.post("/recommend/new-user", json={"attributes": {"shoe_size": 44}})
        assert unknown.status_code == 400 and "'shoe_size'" in unknown.json()["detail"]
        value = client.post("/recommend/new-user", json={"attributes": {"occupation": "astronaut"}})
        assert value.status_code == 400 and "'astronaut'" in value.json()["detail"]
        both = client.post("/recommend/new-user", json={"attributes": given, "items": ["1"]})
        assert both.status_code == 422 and "items or its attributes" in both.text
    with server(cold_runs["vbpr"].path) as client:
        body = client.post("/recommend/new-user", json={"attributes": given, "k": 5}).json()
        assert body["result"]["items"] == attributes_recommend(cold_runs["vbpr"], given, k=5, explain=False).items


@pytest.mark.slow  # shares the trained runs above; each command is a real subprocess
def test_cli_recommends_for_cold_and_new_users(cold_runs):
    from _cli import assert_clean_error, graphrec

    run = cold_runs["vbpr"]
    cold_id, cold_index = cold_runs["cold"][0], cold_runs["cold_index"][0]
    given = _attributes_of(run, cold_index)
    pairs = [arg for key, value in given.items() for arg in ("--attribute", f"{key}={value}")]
    new = json.loads(graphrec("recommend", run.path, *pairs, "-k", "5", "--json", check=True).stdout)
    as_json = json.loads(graphrec("recommend", run.path, "--user-attributes", json.dumps(given), "-k", "5", "--json",
                                  check=True).stdout)
    assert new[0]["items"] == as_json[0]["items"] == recommend(run, [cold_id], k=5, exclude_seen=False)[0].items
    sources = {"average user", "user_age", "user_gender", "user_occupation"}
    assert set(new[0]["explanations"][0]["user_sources"]) == sources
    cold = graphrec("recommend", run.path, "--user", cold_id, "-k", "3", check=True).stdout
    assert "user features average user " in cold and ", user_age " in cold
    assert_clean_error(graphrec("recommend", run.path, "--attribute", "shoe_size=44"), 2, "'shoe_size'")
    assert_clean_error(graphrec("recommend", run.path, "--user-attributes", "[1]"), 2, "expects a JSON object")
    assert_clean_error(graphrec("recommend", run.path), 2, "give --user ID, or a new user's --attribute")
