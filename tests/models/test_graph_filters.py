"""GF-CF and BSPM: against slow dense NumPy references on a small random graph, their selection
mechanics (setting_scorer against select + scorer), the two item–item graph paths, the ODE
solvers, option errors, and that they read nothing but the training split."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

from graphrec.data.dataset import SPLIT_DTYPE, Dataset
from graphrec.errors import ConfigError, GraphrecError
from graphrec.models import BSPM, GFCF, MODELS, BSPMOptions, GFCFOptions, ModelConfig, build_model

NUM_USERS, NUM_ITEMS = 40, 30
COLD_ITEM = 5


def random_dataset(seed: int = 0, scramble_evaluation: int | None = None) -> Dataset:
    """A random graph with a cold item and a user without training items; ``scramble_evaluation``
    redraws the valid and test interactions (the training ones stay)."""
    rng = np.random.default_rng(seed)
    train = rng.random((NUM_USERS, NUM_ITEMS)) < 0.15
    train[:, COLD_ITEM] = False
    train[7] = False
    other = np.random.default_rng(seed + 1 if scramble_evaluation is None else 100 + scramble_evaluation)
    held_out = (other.random((NUM_USERS, NUM_ITEMS)) < 0.1) & ~train
    valid = held_out & (other.random((NUM_USERS, NUM_ITEMS)) < 0.5)
    test = held_out & ~valid
    rows = [(u, i, split) for split, matrix in (("train", train), ("valid", valid), ("test", test))
            for u, i in zip(*np.nonzero(matrix))]
    users, items, splits = zip(*rows)
    interactions = pd.DataFrame({
        "user": np.array(users, np.int32), "item": np.array(items, np.int32),
        "rating": np.full(len(rows), np.nan, np.float32), "timestamp": pd.array([None] * len(rows), dtype="Int64"),
        "split": pd.Categorical(splits, dtype=SPLIT_DTYPE)})
    return Dataset("random", interactions, pd.DataFrame({"item_id": [f"i{k}" for k in range(NUM_ITEMS)]}),
                   pd.DataFrame({"user_id": [f"u{k}" for k in range(NUM_USERS)]}))


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return random_dataset()


# ------------------------------------------------------------------------------------------ references
def dense_filters(dataset: Dataset) -> dict[str, np.ndarray]:
    """R, P~, D_I^-1/2, D_I^1/2 and the right singular vectors of R~, densely, in float64."""
    r = dataset.csr("train").toarray().astype(np.float64)
    user_degree, item_degree = r.sum(1), r.sum(0)
    inv_user = np.divide(1.0, np.sqrt(user_degree), out=np.zeros_like(user_degree), where=user_degree > 0)
    inv_item = np.divide(1.0, np.sqrt(item_degree), out=np.zeros_like(item_degree), where=item_degree > 0)
    norm = inv_user[:, None] * r * inv_item[None, :]
    _, _, vt = np.linalg.svd(norm)
    return {"r": r, "p": norm.T @ norm, "inv_item": inv_item, "sqrt_item": np.sqrt(item_degree), "v": vt.T}


def ideal_reference(f: dict[str, np.ndarray], k: int) -> np.ndarray:
    v = f["v"][:, :k]
    return (f["r"] * f["inv_item"]) @ v @ v.T * f["sqrt_item"]


def gfcf_reference(f: dict[str, np.ndarray], alpha: float, k: int) -> np.ndarray:
    return f["r"] @ f["p"] + alpha * ideal_reference(f, k)


def solve(derivative, x: np.ndarray, time: float, steps: int, method: str) -> np.ndarray:
    """Fixed-step Euler, or RK4 as torchdiffeq's "rk4" (the 3/8 rule), step by step."""
    h = time / steps
    for _ in range(steps):
        if method == "euler":
            x = x + h * derivative(x)
        else:
            k1 = derivative(x)
            k2 = derivative(x + h * k1 / 3)
            k3 = derivative(x + h * (k2 - k1 / 3))
            k4 = derivative(x + h * (k1 - k2 + k3))
            x = x + h * (k1 + 3 * (k2 + k3) + k4) / 8
    return x


def bspm_reference(f: dict[str, np.ndarray], options: BSPMOptions, k: int) -> np.ndarray:
    """The authors' getUsersRating, densely: blur, add (or not) the ideal term, sharpen."""
    p, ideal = f["p"], options.beta * ideal_reference(f, k)
    blurred = solve(lambda x: x @ p - x, f["r"], options.T_b, options.K_b, options.solver_b)
    start = blurred + ideal if options.final_sharpening else blurred
    sharpened = solve(lambda x: -x @ p, start, options.T_s, options.K_s, options.solver_s)
    return sharpened if options.final_sharpening else sharpened + ideal


def all_users() -> torch.Tensor:
    return torch.arange(NUM_USERS)


def scores_of(model, options) -> np.ndarray:
    model.select({name: getattr(options, name) for name in model.search.searched()})
    return model.scorer()(all_users()).double().numpy()


# ------------------------------------------------------------------------------------------ GF-CF
@pytest.mark.parametrize(("solver", "alpha", "k"), [
    ("dense", 0.3, 12), ("dense", 1.0, 20), ("arpack", 0.3, 12), ("arpack", 0.1, 29),
    # q = k + 16 random directions span the whole 30-dimensional row space: exact here
    ("randomized", 0.6, 14), ("randomized", 1.0, 20),
])
def test_gfcf_equals_the_dense_reference(dataset, solver, alpha, k):
    model = GFCF.from_dataset(dataset, GFCFOptions(alpha=alpha, k=k, solver=solver))
    scores = model.scorer()(all_users()).numpy()
    np.testing.assert_allclose(scores, gfcf_reference(dense_filters(dataset), alpha, k), rtol=1e-4, atol=1e-5)
    assert np.all(scores[:, COLD_ITEM] == 0) and np.all(scores[7] == 0)


def test_gfcf_with_alpha_zero_is_the_linear_filter(dataset):
    model = GFCF.from_dataset(dataset, GFCFOptions(alpha=0.0, k=8))
    train = dataset.csr("train").astype(np.float64)
    user_degree, item_degree = np.asarray(train.sum(1)).ravel(), np.asarray(train.sum(0)).ravel()
    norm = train.multiply(1 / np.sqrt(np.maximum(user_degree, 1))[:, None]).multiply(
        1 / np.sqrt(np.maximum(item_degree, 1))[None, :]).tocsr()
    np.testing.assert_allclose(model.scorer()(all_users()).numpy(), (train @ (norm.T @ norm)).toarray(),
                               rtol=1e-5, atol=1e-6)


def test_gfcf_grid_k_is_capped_to_what_the_graph_has_and_an_explicit_k_must_fit(dataset):
    model = GFCF.from_dataset(dataset, GFCFOptions())
    assert model.basis.rank == min(NUM_USERS, NUM_ITEMS) - 1  # every grid k (64 to 448) is larger
    model.select({"alpha": 0.3, "k": 448})
    assert model.options == dataclasses.replace(model.search, alpha=0.3, k=29)
    assert GFCF.from_dataset(dataset, model.options).options == model.options
    # a grid value the graph cannot give is capped, as a run records it; any other k must fit
    assert GFCF.from_dataset(dataset, dataclasses.replace(model.options, k=448)).options == model.options
    with pytest.raises(ConfigError, match=r"k: must be smaller than the training graph's 30 items") as error:
        GFCF.from_dataset(dataset, GFCFOptions(alpha=0.3, k=NUM_ITEMS))
    assert error.value.field == "k"


# ------------------------------------------------------------------------------------------ BSPM
BSPM_CASES = [
    {},  # the published setting's solvers: one Euler blurring step, one RK4 sharpening step
    {"final_sharpening": False},
    {"T_b": 0.7, "K_b": 3, "solver_b": "rk4", "K_s": 2, "solver_s": "euler"},
    {"T_b": 0.0, "k": 10, "item_graph": "on_the_fly"},
]


@pytest.mark.parametrize("case", BSPM_CASES, ids=["published", "ideal-after", "rk4-blur", "no-blur"])
def test_bspm_equals_the_dense_reference(dataset, case):
    model = BSPM.from_dataset(dataset, BSPMOptions(**case))
    filters = dense_filters(dataset)
    for setting in model.search.settings()[::4]:
        options = dataclasses.replace(model.search, **setting)
        np.testing.assert_allclose(scores_of(model, options), bspm_reference(filters, options, model.basis.rank),
                                   rtol=1e-4, atol=2e-5)


def test_bspm_blurring_for_one_euler_step_is_the_linear_filter(dataset):
    """With T_b = 1 in one Euler step and T_s = beta = 0, BSPM is GF-CF's linear filter."""
    bspm = BSPM.from_dataset(dataset, BSPMOptions(T_s=0.0, beta=0.0, k=4))
    gfcf = GFCF.from_dataset(dataset, GFCFOptions(alpha=0.0, k=4))
    torch.testing.assert_close(bspm.scorer()(all_users()), gfcf.scorer()(all_users()))


def test_rk4_and_euler_agree_as_the_steps_grow(dataset):
    """Both converge to the exact solution exp(-T_s P~) of the sharpening ODE; RK4 much faster."""
    filters = dense_filters(dataset)
    exact = filters["r"] @ filters["p"] @ scipy.linalg.expm(-2.5 * filters["p"])
    errors = {}
    for solver in ("euler", "rk4"):
        for steps in (1, 4, 32):
            model = BSPM.from_dataset(dataset, BSPMOptions(T_s=2.5, beta=0.0, K_s=steps, solver_s=solver, k=4))
            errors[solver, steps] = np.abs(model.scorer()(all_users()).numpy() - exact).max()
    scale = np.abs(exact).max()
    assert errors["euler", 32] < errors["euler", 4] < errors["euler", 1]
    assert errors["rk4", 32] < errors["rk4", 4] < errors["rk4", 1]
    assert errors["rk4", 32] < 1e-5 * scale and errors["euler", 32] < 5e-2 * scale
    euler, rk4 = (BSPM.from_dataset(dataset, BSPMOptions(T_s=2.5, beta=0.0, K_s=128, solver_s=solver, k=4))
                  for solver in ("euler", "rk4"))
    assert np.abs(euler.scorer()(all_users()).numpy() - rk4.scorer()(all_users()).numpy()).max() < 1e-2 * scale


# ------------------------------------------------------------------------------------------ both
def models(dataset: Dataset, **options) -> list:
    return [GFCF.from_dataset(dataset, GFCFOptions(**options)),
            BSPM.from_dataset(dataset, BSPMOptions(k=20, **options))]


def drawn(items) -> list[torch.Tensor]:
    """A setting scorer's items as the evaluator reads them: each matrix copied before the next is drawn
    (the scorer may write the next into the same buffer), an index standing for an earlier matrix."""
    out: list[torch.Tensor] = []
    for item in items:
        out.append(out[item] if isinstance(item, int) else item.clone())
    return out


def test_setting_scorer_equals_select_then_scorer(dataset):
    """Every setting of one pass (written into a shared buffer, equal settings by index) scores as
    selecting it, then scoring, does."""
    for model in models(dataset):
        settings = model.search.settings()
        assert len(settings) == (20 if model.name == "gfcf" else 12)
        batch = torch.tensor([0, 3, 7, 11, 39])
        items = list(model.setting_scorer(settings)(batch))
        if model.name == "gfcf":  # alpha = 0 is one setting whatever k
            assert items[1:4] == [0, 0, 0]
        together = drawn(model.setting_scorer(settings)(batch))
        assert len(together) == len(settings)
        for setting, scores in zip(settings, together):
            model.select(setting)
            torch.testing.assert_close(model.scorer()(batch), scores, rtol=1e-5, atol=1e-6)


def test_scoring_in_chunks_equals_scoring_at_once(dataset, monkeypatch):
    for model in models(dataset):
        model.select(model.search.settings()[-1])
        whole = model.scorer()(all_users())
        monkeypatch.setattr("graphrec.models.gfcf.USER_CHUNK", 7)
        torch.testing.assert_close(model.scorer()(all_users()), whole)
        monkeypatch.undo()


def test_materialised_and_on_the_fly_item_graphs_agree(dataset):
    for materialised, on_the_fly in zip(models(dataset, item_graph="materialise"),
                                        models(dataset, item_graph="on_the_fly")):
        assert materialised.graph.item_item is not None and on_the_fly.graph.item_item is None
        settings = materialised.search.settings()
        for ours, theirs in zip(materialised.setting_scorer(settings)(all_users()),
                                on_the_fly.setting_scorer(settings)(all_users())):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    small = GFCF.from_dataset(dataset, GFCFOptions(item_graph_budget_mb=1e-3)).graph
    large = GFCF.from_dataset(dataset, GFCFOptions()).graph
    assert not small.materialised and large.materialised
    assert large.item_item is not None and large.item_item.nnz <= large.estimated_nnz


def test_scorer_before_a_choice_raises_and_a_setting_must_fix_the_searched_options(dataset):
    for model in models(dataset):
        with pytest.raises(GraphrecError, match="options still to choose on the validation split"):
            model.scorer()
        with pytest.raises(GraphrecError, match="must fix exactly the options still to choose"):
            model.select({})
        setting = model.search.settings()[0]
        name = next(iter(setting))
        with pytest.raises(ConfigError, match="is not in the grid") as error:
            model.select({**setting, name: 0.123})
        assert error.value.field == name


@pytest.mark.parametrize(("model", "options", "field", "message"), [
    ("gfcf", {"k": 0}, "k", "must be > 0"),
    ("gfcf", {"k": 2.5}, "k", "must be an integer"),
    ("gfcf", {"alpha": -0.1}, "alpha", "must be >= 0"),
    ("gfcf", {"solver": "lanczos"}, "solver", "must be one of auto, randomized, arpack, dense"),
    ("gfcf", {"item_graph": "dense"}, "item_graph", "must be one of auto, materialise, on_the_fly"),
    ("bspm", {"T_b": -1.0}, "T_b", "must be >= 0"),
    ("bspm", {"T_s": -0.5}, "T_s", "must be >= 0"),
    ("bspm", {"K_s": 0}, "K_s", "must be >= 1"),
    ("bspm", {"solver_s": "heun"}, "solver_s", "must be one of euler, rk4"),
    ("bspm", {"solver_b": "dopri5"}, "solver_b", "must be one of euler, rk4"),
    ("bspm", {"T_s": 20.0, "K_s": 10}, "T_s", "choose shorter times"),
    ("bspm", {"beta": "0.2"}, "beta", "must be a number"),
])
def test_bad_options_are_errors_naming_the_option(model, options, field, message):
    with pytest.raises(ConfigError, match=message) as error:
        ModelConfig(model, **options)
    assert error.value.field == field
    assert "--" not in str(error.value)


def test_k_must_be_smaller_than_the_items(dataset):
    for name in ("gfcf", "bspm"):
        with pytest.raises(ConfigError, match="smaller than the training graph's 30 items and 40 users") as error:
            build_model(ModelConfig(name, k=NUM_ITEMS), dataset)
        assert error.value.field == "k"


def test_models_read_only_the_training_split(dataset, monkeypatch):
    """Scrambled validation and test splits change nothing, and only the training split is read."""
    scrambled = random_dataset(scramble_evaluation=1)
    assert (scrambled.csr(["valid", "test"]) != dataset.csr(["valid", "test"])).nnz > 0
    read = []
    for method in ("csr", "pairs"):
        original = getattr(Dataset, method)
        monkeypatch.setattr(Dataset, method, lambda self, splits="train", _original=original:
                            read.append(splits) or _original(self, splits))
    for name in ("gfcf", "bspm"):
        ours, theirs = (build_model(ModelConfig(name), data, seed=0) for data in (dataset, scrambled))
        settings = ours.search.settings()
        for a, b in zip(ours.setting_scorer(settings)(all_users()), theirs.setting_scorer(settings)(all_users())):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert read and set(read) == {"train"}


def test_state_survives_a_rebuild_from_the_chosen_options(dataset):
    """The run loader rebuilds from the recorded (concrete) options and loads the state_dict."""
    for name in ("gfcf", "bspm"):
        model = build_model(ModelConfig(name), dataset, seed=3)
        model.select(model.search.settings()[5])
        assert model.state_dict() == {} and MODELS[name].selects_on_validation
        rebuilt = build_model(ModelConfig(name, model.options), dataset, seed=3)
        rebuilt.load_state_dict(model.state_dict())
        assert rebuilt.options.searched() == {}
        torch.testing.assert_close(rebuilt.scorer()(all_users()), model.scorer()(all_users()))
