"""Write a dataset in a peer library's format, on exactly our split.

* ``recbole``: ``NAME.train.inter`` / ``NAME.valid.inter`` / ``NAME.test.inter`` (RecBole's
  ``benchmark_filename`` convention) plus ``NAME.user`` and ``NAME.item`` listing every user and
  item in index order, so a re-import keeps every index.
* ``mmrec``: ``NAME.inter`` with ``x_label`` (0/1/2), ``<modality>_feat.npy`` per modality, and the
  ``u_id_mapping.csv`` / ``i_id_mapping.csv`` id maps.
* ``lightgcn``: ``train.txt`` / ``valid.txt`` / ``test.txt`` (``user item item ...``) and
  ``user_list.txt`` / ``item_list.txt`` (``org_id remap_id``).

Each export is written to a temporary directory and renamed into place. Ids are written as
they are, never quoted or rewritten: an id the format cannot hold (a tab or line break in the
tab-separated formats, any whitespace in LightGCN's space-separated lists) is an error naming it.
:func:`export_notes` says what a peer will read differently from graphrec (``graphrec export`` prints it):
MMRec counts the users and items as the largest id in its ``.inter`` file plus one, so trailing users
or items without interactions drop out of its models while the feature files keep their rows.
Converting an export back gives the identical interactions, ids and split; ``recbole`` and
``mmrec`` also keep ratings and timestamps (and ``mmrec`` the features, with
``<modality>_mask.npy`` beside a matrix when some items lack that modality, which graphrec's
reader honours), while LightGCN's format has no place for them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from graphrec.data.dataset import SPLITS, Dataset
from graphrec.data.formats.mmrec import MASK_SUFFIX
from graphrec.data.storage import atomic_directory, write_json
from graphrec.errors import GraphrecError

EXPORT_FORMATS = ("recbole", "mmrec", "lightgcn")
#: Written beside the exported files: what was exported, from where.
EXPORT_MARKER = "graphrec-export.json"
_RECBOLE_SPLIT_FILES = {"train": "train", "valid": "valid", "test": "test"}


def export_dataset(dataset: Dataset, format: str, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``dataset`` to ``out`` in ``format`` (one of :data:`EXPORT_FORMATS`)."""
    writers = {"recbole": _write_recbole, "mmrec": _write_mmrec, "lightgcn": _write_lightgcn}
    if format not in writers:
        raise GraphrecError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    with atomic_directory(out, overwrite=overwrite, reads=[dataset.path]) as tmp:
        writers[format](dataset, tmp)
        # the marker that lets a later export replace this one (graphrec replaces only what it wrote)
        write_json(tmp / EXPORT_MARKER, {"format": format, "dataset": dataset.name,
                                         "source": None if dataset.path is None else str(Path(dataset.path).resolve())})
    return out


def export_notes(dataset: Dataset, format: str) -> list[str]:
    """What the peer library reading the ``format`` export of ``dataset`` sees differently from graphrec."""
    if format != "mmrec":
        return []
    notes = []
    for kind, total in (("user", dataset.num_users), ("item", dataset.num_items)):
        counted = int(dataset.interactions[kind].max()) + 1 if len(dataset.interactions) else 0
        if counted < total:
            note = (f"the last {total - counted} of {total} {kind}s have no interaction in any split, and MMRec "
                    f"counts {counted} {kind}s (the largest {kind} id in {dataset.name}.inter plus one)")
            if kind == "item" and dataset.features:
                note += (f"; the feature files keep all {total} rows, which some of MMRec's models refuse "
                         f"(VBPR): cut the rows past item id {counted - 1} for MMRec")
            notes.append(note)
    return notes


def _token(values: pd.Series, kind: str, forbidden: str = r"[\t\n\r]",
           what: str = "a tab or line break") -> pd.Series:
    text = values.astype(str)
    bad = text.str.contains(forbidden, regex=True)
    if bad.any():
        raise GraphrecError(f"{kind} id {text[bad].iloc[0]!r} contains {what}, which this export format "
                            f"cannot hold")
    return text


def _write_table(frame: pd.DataFrame, path: Path, sep: str = "\t") -> None:
    """Fields exactly as they are: the readers of these formats do not unquote."""
    frame.to_csv(path, sep=sep, index=False, na_rep="", quoting=csv.QUOTE_NONE)


def _write_recbole(dataset: Dataset, out: Path) -> None:
    name = dataset.name
    inter = dataset.interactions
    user_tokens = _token(dataset.users["user_id"], "user").to_numpy()
    item_tokens = _token(dataset.items["item_id"], "item").to_numpy()
    frame = pd.DataFrame({
        "user_id:token": user_tokens[inter["user"].to_numpy()],
        "item_id:token": item_tokens[inter["item"].to_numpy()],
        "rating:float": inter["rating"].to_numpy(),
        "timestamp:float": inter["timestamp"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan),
    })
    for column in ("rating:float", "timestamp:float"):
        if frame[column].isna().all():
            frame = frame.drop(columns=column)
    for split in SPLITS:
        part = frame[(inter["split"] == split).to_numpy()]
        _write_table(part, out / f"{name}.{_RECBOLE_SPLIT_FILES[split]}.inter")
    _write_table(pd.DataFrame({"user_id:token": user_tokens}), out / f"{name}.user")
    items = pd.DataFrame({"item_id:token": item_tokens})
    if "title" in dataset.items:
        items["title:token_seq"] = dataset.items["title"].fillna("").astype(str).str.replace(r"[\t\n]", " ",
                                                                                              regex=True)
    for column, field in (("genres", "genre:token_seq"), ("categories", "categories:token_seq")):
        if column in dataset.items:
            items[field] = dataset.items[column].map(
                lambda v: " ".join(str(x).replace(" ", "_") for x in v) if isinstance(v, (list, np.ndarray)) else "")
    _write_table(items, out / f"{name}.item")


def _write_mmrec(dataset: Dataset, out: Path) -> None:
    inter = dataset.interactions
    frame = pd.DataFrame({
        "userID": inter["user"].to_numpy(),
        "itemID": inter["item"].to_numpy(),
        "rating": inter["rating"].to_numpy(),
        "timestamp": inter["timestamp"],
        "x_label": inter["split"].cat.codes.to_numpy(),
    })
    _write_table(frame, out / f"{dataset.name}.inter")
    for name, feature in dataset.features.items():
        np.save(out / f"{name}_feat.npy", feature.values)
        if not feature.mask.all():
            np.save(out / f"{name}{MASK_SUFFIX}", feature.mask.astype(bool))
    _write_table(pd.DataFrame({"user_id": _token(dataset.users["user_id"], "user"),
                               "userID": np.arange(dataset.num_users)}), out / "u_id_mapping.csv")
    _write_table(pd.DataFrame({"asin": _token(dataset.items["item_id"], "item"),
                               "itemID": np.arange(dataset.num_items)}), out / "i_id_mapping.csv")


def _write_lightgcn(dataset: Dataset, out: Path) -> None:
    inter = dataset.interactions
    for split in SPLITS:
        mask = (inter["split"] == split).to_numpy()
        if split == "valid" and not mask.any():
            continue
        users = inter["user"].to_numpy()[mask]
        items = inter["item"].to_numpy()[mask]
        order = np.lexsort((items, users))
        users, items = users[order], items[order]
        boundaries = np.searchsorted(users, np.arange(dataset.num_users + 1))
        # Every user gets a line in train.txt, even with no items, so the user set survives a round trip.
        keep_empty = split == "train"
        with open(out / f"{split}.txt", "w") as handle:
            for user in range(dataset.num_users):
                start, end = boundaries[user], boundaries[user + 1]
                if start == end and not keep_empty:
                    continue
                handle.write(" ".join([str(user), *map(str, items[start:end].tolist())]) + "\n")
    for kind, table, column in (("user", dataset.users, "user_id"), ("item", dataset.items, "item_id")):
        _write_table(pd.DataFrame({"org_id": _token(table[column], kind, r"\s", "whitespace"),
                                   "remap_id": np.arange(len(table))}), out / f"{kind}_list.txt", sep=" ")
