r"""A recommendation server over HTTP: ``graphrec serve RUN``, FastAPI on uvicorn.

Endpoints (every id is an original id of the run's dataset; the OpenAPI schema is at
``/openapi.json`` and browsable at ``/docs``):

* ``POST /recommend`` ``{"users": [...], "k": 20, "exclude_seen": true, "explain": false}``: the
  top ``k`` items of each user, as :func:`~graphrec.serving.recommend.recommend` ranks them;
* ``POST /recommend/new-user`` ``{"items": [...], "k": 20}``: a user the run has never seen,
  folded in from the items they interacted with, without retraining (below); or
  ``{"attributes": {"age": 25, "gender": "F", ...}, "k": 20}``: one known by attribute values only,
  placed by the model's user sources (:func:`~graphrec.serving.recommend.attributes_recommend`; a
  model that cannot, an unknown attribute or value, is a 400 naming it);
* ``POST /similar-items`` ``{"item": "...", "k": 20}``: the items most like one item;
* ``GET /health`` and ``GET /info`` (model, dataset, counts, the features' fingerprint, the index).

Errors are JSON ``{"detail": ...}``: an unknown user or item is a 404 naming it, a malformed body a
422 (FastAPI's validation), and a ``k`` above the server's ``max_k`` (or the catalogue) is capped,
with a note in the answer's ``notes``. Any other failure is a 500 whose body names the error's
type only: tracebacks go to the server's log, never to a client.

The run is loaded once, when the server starts, and everything it answers from (embeddings or
the model's scorer, the seen-item matrix, the index) is held in memory: a run directory rewritten
while the server is up (a new ``graphrec train --out`` there) does not change its answers until it
restarts.

**Scoring.** Requests to ``/recommend`` that arrive while a batch is being scored queue up and are
scored together, with one product of their users' vectors against the item matrix
(:class:`ScoringBatcher`): under concurrent load the item matrix is read once per batch instead
of once per request; a lone request waits for nobody. With an index built by ``graphrec index``
(``RUN/index``), top-k comes from it (faiss, IVF or flat); otherwise from exact search over
every item. Models without embeddings (``has_embeddings = False``: GF-CF, BSPM) score through
their own scorer.

**Fold-in of a new user** from its items :math:`\mathcal{H}`: for models with embeddings, the
mean of those items' final embeddings,
:math:`\mathbf{u}_{\text{new}} = \frac{1}{|\mathcal{H}|} \sum_{i \in \mathcal{H}} \mathbf{v}_i`
(:func:`~graphrec.serving.recommend.new_user_recommend`); for the graph filters (GF-CF, BSPM, mmgf:
:attr:`~graphrec.models.base.Recommender.linear_in_history`), the model's own filter applied to the
new user's binary row (:meth:`~graphrec.models.base.Recommender.score_histories`), which is exact:
their scores are functions of a user's row alone. Any other model without embeddings falls back to
GF-CF's linear item–item filter (Shen et al., CIKM 2021),
:math:`\mathbf{s} = \mathbf{r}\,\tilde{\mathbf{R}}^\top \tilde{\mathbf{R}}` with
:math:`\tilde{\mathbf{R}} = \mathbf{D}_U^{-1/2} \mathbf{R} \mathbf{D}_I^{-1/2}` of the training
interactions. ``/similar-items`` ranks by the cosine of item embeddings, or by the same filter of the
item's one-hot row for models without embeddings. Explanations for the graph filters are the training
items that contribute most to a score (:mod:`graphrec.serving.explain`).
"""


import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.data.dataset import SPLITS
from graphrec.errors import ConfigError, GraphrecError
from graphrec.serving.explain import add_user_sources, explain_items
from graphrec.serving.index import EmbeddingIndex
from graphrec.serving.recommend import Recommendation, lookup_ids, rank

#: The environment variable through which ``graphrec serve --workers N`` hands each uvicorn worker
#: its configuration (uvicorn starts several workers from an import string, not an app object).
CONFIG_ENV = "GRAPHREC_SERVE_CONFIG"
#: Users one request to ``/recommend`` may ask for.
MAX_USERS_PER_REQUEST = 1000

log = logging.getLogger("graphrec.serve")


@dataclass(frozen=True)
class ServerConfig:
    """How to serve a run."""

    run: str
    host: str = "127.0.0.1"
    port: int = 8000
    #: uvicorn worker processes, each with its own copy of the run in memory.
    workers: int = 1
    #: The largest k answered; larger ones are capped, with a note.
    max_k: int = 100
    #: Most users scored in one batch of concurrent requests.
    max_batch_users: int = 1024
    #: Use ``RUN/index`` when ``graphrec index`` built one.
    use_index: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"must be a TCP port (0 to 65535), got {self.port}", field="port")
        for name in ("workers", "max_k", "max_batch_users"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be at least 1, got {getattr(self, name)}", field=name)


class UnknownIdError(GraphrecError):
    """An id that the run's dataset does not have (answered with 404)."""


@dataclass
class Query:
    """One ``/recommend`` request, in indices."""

    users: np.ndarray
    k: int
    exclude_seen: bool
    explain: bool


@dataclass
class ServedRecommendations:
    results: list[Recommendation]
    notes: list[str] = field(default_factory=list)


class RecommendationService:
    """A loaded run and everything precomputed to answer from it."""

    def __init__(self, run_path: str | Path, max_k: int = 100, use_index: bool = True) -> None:
        from graphrec.training.run import load_run

        self.path = Path(run_path)
        self.run = load_run(self.path)
        self.max_k = max_k
        dataset = self.run.dataset
        self.model = self.run.model.eval()
        self.item_ids = dataset.items["item_id"].astype(str).to_numpy()
        self.user_ids = dataset.users["user_id"].astype(str).to_numpy()
        self._user_index = {user: index for index, user in enumerate(self.user_ids)}
        self._item_index = {item: index for index, item in enumerate(self.item_ids)}
        self.seen = dataset.csr(list(SPLITS))
        self.history = dataset.csr("train")
        self.user_emb: Tensor | None = None
        self.item_emb: Tensor | None = None
        if self.model.has_embeddings:
            user_emb, item_emb = self.run.embeddings()
            self.user_emb, self.item_emb = user_emb.to(torch.float32), item_emb.to(torch.float32)
            self._scorer = None
        else:
            self._scorer = self.model.scorer()
        self._item_filter: tuple[sp.csr_matrix, sp.csr_matrix] | None = None
        #: Explanations come from item embeddings, or from a graph filter's contributions.
        self.explainable = self.item_emb is not None or self.model.linear_in_history
        self.index = self._load_index() if use_index else None
        self.spec = json.loads((self.path / "run.json").read_text())

    # ----------------------------------------------------------------- ids
    def user_indices(self, user_ids: Sequence[str]) -> np.ndarray:
        return self._indices(user_ids, self._user_index, "user")

    def item_indices(self, item_ids: Sequence[str]) -> np.ndarray:
        return self._indices(item_ids, self._item_index, "item")

    def _indices(self, wanted: Sequence[str], known: dict[str, int], kind: str) -> np.ndarray:
        try:
            return np.fromiter((known[str(value)] for value in wanted), dtype=np.int64, count=len(wanted))
        except KeyError:
            pass
        frame = self.run.dataset.users["user_id"] if kind == "user" else self.run.dataset.items["item_id"]
        try:
            lookup_ids(frame, [str(value) for value in wanted], kind=kind)
        except GraphrecError as error:  # the message names the unknown ids and suggests known ones
            raise UnknownIdError(str(error)) from None
        raise AssertionError("unreachable: every id was found")  # pragma: no cover

    def capped_k(self, k: int, notes: list[str]) -> int:
        limit = min(self.max_k, self.run.dataset.num_items)
        if k > limit:
            notes.append(f"k={k} is more than this server answers ({limit}"
                         f"{', its max_k' if limit == self.max_k else ', the number of items'}): capped to {limit}")
            return limit
        return k

    # ------------------------------------------------------------- scoring
    @torch.no_grad()
    def recommend_batch(self, queries: Sequence[Query]) -> list[list[Recommendation]]:
        """Top-k for several requests, their users scored together."""
        users = np.concatenate([query.users for query in queries])
        k = max(query.k for query in queries)
        exclude = [query.exclude_seen for query in queries for _ in range(len(query.users))]
        values, columns = self._top_k(users, k, np.asarray(exclude, dtype=bool))
        out, start = [], 0
        for query in queries:
            stop = start + len(query.users)
            rows_values, rows_columns = values[start:stop, :query.k], columns[start:stop, :query.k]
            explanations: list[Any] = [None] * len(query.users)
            if query.explain and self.explainable:
                history = self.history[query.users]
                explanations = explain_items(self.model, self.item_emb, self.item_ids, history, rows_columns)
                cold = np.flatnonzero(np.diff(history.indptr) == 0)
                if len(cold) and self.model.scores_new_users:  # users placed by their own sources
                    add_user_sources([explanations[row] for row in cold], self.model, self.item_emb,
                                     rows_columns[cold], users=query.users[cold])
            out.append([self._recommendation(self.user_ids[user], row_values, row_columns, why)
                        for user, row_values, row_columns, why in zip(query.users, rows_values, rows_columns,
                                                                      explanations)])
            start = stop
        return out

    def _top_k(self, users: np.ndarray, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.index is not None and self.user_emb is not None:
            seen = self.seen[users]
            excluded = [set(seen.indices[seen.indptr[row]:seen.indptr[row + 1]].tolist()) if exclude[row] else set()
                        for row in range(len(users))]
            found, columns = self.index.search(self.user_emb[torch.from_numpy(users)].numpy(), k, exclude=excluded)
            return np.where(columns >= 0, found, np.nan), columns
        scores: Tensor
        if self.user_emb is not None and self.item_emb is not None:
            scores = self.user_emb[torch.from_numpy(users)] @ self.item_emb.t()
        else:
            assert self._scorer is not None
            scores = self._scorer(torch.from_numpy(users))
        mask = self.seen[users]
        if not exclude.all():
            mask = sp.diags(exclude.astype(np.float32)) @ mask
        return rank(scores, k, sp.csr_matrix(mask))

    def _recommendation(self, user_id: str, values: np.ndarray, columns: np.ndarray, explanations: Any,
                        ) -> Recommendation:
        keep = columns >= 0
        return Recommendation(user_id=str(user_id), items=self.item_ids[columns[keep]].tolist(),
                              scores=values[keep].astype(float).tolist(), explanations=explanations)

    @torch.no_grad()
    def new_user(self, item_ids: Sequence[str], k: int, explain: bool) -> Recommendation:
        """Top-k for a user folded in from ``item_ids`` (see the module docstring)."""
        items = np.unique(self.item_indices(item_ids))
        history = sp.csr_matrix((np.ones(len(items), dtype=np.float32), (np.zeros(len(items), dtype=np.int64), items)),
                                shape=(1, len(self.item_ids)))
        if self.item_emb is not None:
            scores = self.item_emb[torch.from_numpy(items)].mean(dim=0, keepdim=True) @ self.item_emb.t()
        else:
            scores = self._filter_scores(history)
        values, columns = rank(scores, k, history)
        explanations = None
        if explain and self.explainable:
            explanations = explain_items(self.model, self.item_emb, self.item_ids, history, columns)[0]
        return self._recommendation("new user", values[0], columns[0], explanations)

    @torch.no_grad()
    def new_user_from_attributes(self, attributes: dict[str, Any], k: int, explain: bool) -> Recommendation:
        """Top-k for a user known only by attribute values (see the module docstring)."""
        from graphrec.serving.recommend import attributes_recommend

        return attributes_recommend(self.run, attributes, k=k, explain=explain and self.explainable)

    @torch.no_grad()
    def similar_items(self, item_id: str, k: int) -> Recommendation:
        """The ``k`` items most like ``item_id`` (itself left out)."""
        item = self.item_indices([item_id])
        itself = sp.csr_matrix((np.ones(1, dtype=np.float32), (np.zeros(1, dtype=np.int64), item)),
                               shape=(1, len(self.item_ids)))
        if self.item_emb is not None:
            normalised = torch.nn.functional.normalize(self.item_emb, dim=1)
            scores = normalised[torch.from_numpy(item)] @ normalised.t()
        else:
            scores = self._filter_scores(itself)
        values, columns = rank(scores, k, itself)
        return self._recommendation(str(item_id), values[0], columns[0], None)

    def _filter_scores(self, rows: sp.csr_matrix) -> Tensor:
        if self.model.linear_in_history:  # the model's own filter, for any rows
            return self.model.score_histories(rows)
        return self._linear_filter_scores(rows)

    def _linear_filter_scores(self, rows: sp.csr_matrix) -> Tensor:
        """:math:`\\mathbf{r} \\tilde{R}^\\top \\tilde{R}` of binary item rows (see the module docstring)."""
        if self._item_filter is None:
            train = self.history
            user_degree = np.asarray(train.sum(axis=1)).ravel()
            item_degree = np.asarray(train.sum(axis=0)).ravel()
            inverse = [np.divide(1.0, np.sqrt(d), out=np.zeros_like(d, dtype=np.float64), where=d > 0)
                       for d in (user_degree, item_degree)]
            normalised = sp.csr_matrix(sp.diags(inverse[0]) @ train @ sp.diags(inverse[1]), dtype=np.float32)
            self._item_filter = (normalised, sp.csr_matrix(normalised.T))
        normalised, transposed = self._item_filter
        return torch.from_numpy(np.asarray(((rows @ transposed) @ normalised).todense(), dtype=np.float32))

    # ---------------------------------------------------------------- info
    def info(self) -> dict[str, Any]:
        dataset = self.run.dataset
        counts = dataset.split_counts()
        return {
            "run": str(self.path.resolve()),
            "model": self.run.model_config.to_dict(),
            "dataset": {"name": dataset.name, "path": self.spec.get("dataset"), "users": dataset.num_users,
                        "items": dataset.num_items, "interactions": {split: int(counts[split]) for split in counts}},
            "features": self.spec.get("features", {}),
            "search": ("exact" if self.index is None else
                       {"index": self.index.kind, "backend": self.index.backend, "metric": self.index.metric,
                        "nprobe": self.index.nprobe}),
            "fold_in": ("mean of item embeddings" if self.item_emb is not None else
                        "the model's own filter" if self.model.linear_in_history else "GF-CF item-item filter"),
            "max_k": self.max_k,
            "valid": {key: value for key, value in (self.run.metrics.get("valid") or {}).items()
                      if key.endswith("@20")},
        }

    def _load_index(self) -> EmbeddingIndex | None:
        path = self.path / "index"
        if self.user_emb is None or not (path / "index.json").is_file():
            return None
        index = EmbeddingIndex.load(path)
        if (index.metric != "ip" or list(index.item_ids) != self.item_ids.tolist()
                or index.dim != self.user_emb.shape[1]):
            log.warning("ignoring %s: it does not index this run's item embeddings by inner product", path)
            return None
        return index


class ScoringBatcher:
    """Scores the ``/recommend`` requests that queue up while a batch is being scored as one batch.

    No request waits for others to arrive: the batch is whatever is queued when the previous one
    finishes, up to ``max_users`` users, scored in a worker thread so that the event loop keeps
    accepting requests meanwhile."""

    def __init__(self, service: RecommendationService, max_users: int) -> None:
        self.service = service
        self.max_users = max_users
        self.queue: asyncio.Queue[tuple[Query, asyncio.Future[list[Recommendation]]]] = asyncio.Queue()
        self.batches = 0
        self.requests = 0

    async def submit(self, query: Query) -> list[Recommendation]:
        future: asyncio.Future[list[Recommendation]] = asyncio.get_running_loop().create_future()
        await self.queue.put((query, future))
        return await future

    async def run(self) -> None:
        while True:
            pending = [await self.queue.get()]
            users = len(pending[0][0].users)
            while not self.queue.empty() and users < self.max_users:
                pending.append(self.queue.get_nowait())
                users += len(pending[-1][0].users)
            try:
                results = await asyncio.to_thread(self.service.recommend_batch, [query for query, _ in pending])
            except Exception as error:
                for _, future in pending:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batches += 1
            self.requests += len(pending)
            for (_, future), result in zip(pending, results):
                if not future.done():
                    future.set_result(result)


def create_app(config: ServerConfig, service: RecommendationService | None = None) -> Any:
    """The FastAPI application serving ``config.run`` (loaded now unless ``service`` is given)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    service = service or RecommendationService(config.run, max_k=config.max_k, use_index=config.use_index)
    batcher = ScoringBatcher(service, config.max_batch_users)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="graphrec", description=f"Recommendations from the run {service.path}",
                  version=_version(), lifespan=lifespan)

    class RecommendBody(BaseModel):
        model_config = ConfigDict(extra="forbid")
        users: list[str | int] = Field(min_length=1, max_length=MAX_USERS_PER_REQUEST,
                                       description="original user ids")
        k: int = Field(20, ge=1, description="items per user (capped at the server's max_k)")
        exclude_seen: bool = Field(True, description="leave out items the user interacted with in any split")
        explain: bool = Field(False, description="say why each item is recommended")

    class NewUserBody(BaseModel):
        model_config = ConfigDict(extra="forbid")
        items: list[str | int] | None = Field(None, min_length=1, max_length=10_000,
                                              description="original ids of the items the new user interacted with")
        attributes: dict[str, str | int | float | list[str] | None] | None = Field(
            None, min_length=1, max_length=100,
            description="the new user's attribute values, column -> value (instead of items)")
        k: int = Field(20, ge=1)
        explain: bool = False

        @model_validator(mode="after")
        def items_or_attributes(self) -> "NewUserBody":
            if (self.items is None) == (self.attributes is None):
                raise ValueError("give the new user's items or its attributes (one of the two)")
            return self

    class SimilarItemsBody(BaseModel):
        model_config = ConfigDict(extra="forbid")
        item: str | int = Field(description="original item id")
        k: int = Field(20, ge=1)

    @app.exception_handler(UnknownIdError)
    async def unknown_id(_: Request, error: UnknownIdError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(error)})

    @app.exception_handler(GraphrecError)
    async def graphrec_error(_: Request, error: GraphrecError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(error)})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"internal error ({type(error).__name__})"})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "batches": batcher.batches, "requests": batcher.requests}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return service.info()

    @app.post("/recommend")
    async def recommend(body: RecommendBody) -> JSONResponse:
        notes: list[str] = []
        k = service.capped_k(body.k, notes)
        query = Query(users=service.user_indices([str(user) for user in body.users]), k=k,
                      exclude_seen=body.exclude_seen, explain=body.explain)
        results = await batcher.submit(query)
        # plain JSON types already: a JSONResponse skips FastAPI's per-field encoding of the answer
        return JSONResponse({"k": k, "results": [result.to_dict() for result in results], "notes": notes})

    @app.post("/recommend/new-user")
    async def new_user(body: NewUserBody) -> dict[str, Any]:
        notes: list[str] = []
        k = service.capped_k(body.k, notes)
        if body.attributes is not None:
            result = await asyncio.to_thread(service.new_user_from_attributes, dict(body.attributes), k, body.explain)
        else:
            assert body.items is not None  # checked by NewUserBody
            result = await asyncio.to_thread(service.new_user, [str(item) for item in body.items], k, body.explain)
        return {"k": k, "result": result.to_dict(), "notes": notes}

    @app.post("/similar-items")
    async def similar_items(body: SimilarItemsBody) -> dict[str, Any]:
        notes: list[str] = []
        k = service.capped_k(body.k, notes)
        result = await asyncio.to_thread(service.similar_items, str(body.item), k)
        return {"k": k, "item": str(body.item), "items": result.items, "scores": result.scores, "notes": notes}

    return app


def app_from_environment() -> Any:
    """The application for a uvicorn worker, configured through :data:`CONFIG_ENV`."""
    return create_app(ServerConfig(**json.loads(os.environ[CONFIG_ENV])))


def serve(config: ServerConfig, log_level: str = "info") -> None:
    """Serve ``config.run`` until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise GraphrecError("graphrec serve needs FastAPI and uvicorn: pip install 'graphrec[serve]'") from None
    run_json = Path(config.run) / "run.json"
    if not run_json.is_file():
        raise GraphrecError(f"{config.run} is not a graphrec run directory (run.json is missing)")
    if config.workers == 1:
        uvicorn.run(create_app(config), host=config.host, port=config.port, log_level=log_level)
        return
    # Several workers: uvicorn imports the app in each, configured through the environment.
    os.environ[CONFIG_ENV] = json.dumps(asdict(config))
    uvicorn.run("graphrec.serving.server:app_from_environment", factory=True, host=config.host, port=config.port,
                workers=config.workers, log_level=log_level)


def _version() -> str:
    from graphrec import __version__

    return __version__


__all__ = ["CONFIG_ENV", "RecommendationService", "ScoringBatcher", "ServerConfig", "create_app", "serve"]
