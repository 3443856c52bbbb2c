"""Format readers on small real files (exact expected frames), on the real data sets, and on bad input."""

from __future__ import annotations

import gzip
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from graphrec.data.formats import get_reader
from graphrec.data.formats.lightgcn import read as read_lightgcn
from graphrec.data.raw import RawDataset
from graphrec.errors import DataFormatError, GraphrecError, InputWarning

NA = None  # how a missing value reads in the expected rows below


def plain(value: Any) -> Any:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return NA
    if isinstance(value, np.generic):
        return value.item()
    return value


def rows(frame: pd.DataFrame, columns: list[str] | None = None) -> list[tuple]:
    frame = frame if columns is None else frame[columns]
    return [tuple(plain(v) for v in row) for row in frame.itertuples(index=False)]


def assert_interaction_dtypes(raw: RawDataset) -> None:
    inter = raw.interactions
    assert pd.api.types.is_string_dtype(inter["user_id"]) and pd.api.types.is_string_dtype(inter["item_id"])
    assert inter["rating"].dtype == np.float64
    assert inter["timestamp"].dtype == "Int64"
    if raw.has_split:
        assert set(inter["split"]) <= {"train", "valid", "test"}


# ----------------------------------------------------------------- MovieLens
def test_movielens_100k(sample):
    raw = get_reader("movielens")(sample("movielens-100k"))
    assert_interaction_dtypes(raw)
    assert not raw.has_split
    assert rows(raw.interactions) == [("196", "242", 3.0, 881250949), ("186", "302", 3.0, 891717742),
                                      ("196", "302", 5.0, 881251000)]
    assert rows(raw.items, ["item_id", "title", "genres", "year", "release_date"]) == [
        ("242", "Kolya (1996)", ["Comedy"], 1996, "24-Jan-1997"),
        ("302", "Misérables, Les (1995)", ["Drama", "Musical"], 1995, "01-Jan-1995"),  # latin-1 é
        ("267", "unknown", ["unknown"], NA, NA),
    ]
    assert raw.items["year"].dtype == "Int64"
    assert rows(raw.users) == [("186", 39, "F", "executive", "00000"), ("196", 49, "M", "writer", "55105")]
    assert raw.source["release"] == "100k"


def test_movielens_100k_without_genre_file_uses_the_standard_genres(sample):
    raw = get_reader("movielens")(sample("movielens-100k", {"u.genre": None}))
    assert raw.items["genres"].tolist() == [["Comedy"], ["Drama", "Musical"], ["unknown"]]


def test_movielens_1m_dat_latin1_and_colons_in_titles(sample):
    with pytest.warns(InputWarning, match="read as latin-1"):
        raw = get_reader("movielens")(sample("movielens-1m"))
    assert rows(raw.interactions) == [("1", "1193", 5.0, 978300760), ("1", "661", 3.0, 978302109),
                                      ("2", "1193", 4.0, 978298413)]
    assert rows(raw.items) == [
        ("661", "James and the Giant Peach (1996)", ["Animation", "Children's", "Musical"], 1996),
        ("1193", "One Flew Over the Cuckoo's Nest (1975)", ["Drama"], 1975),
        ("3", "Star Wars: Episode IV - A New Hope (1977)", ["Action", "Adventure"], 1977),
        ("4", "Cité des enfants perdus, La (1995)", ["Adventure", "Sci-Fi"], 1995),
    ]
    assert rows(raw.users) == [("1", "F", 1, 10, "48067"), ("2", "M", 56, 16, "70072")]


def test_movielens_10m_utf8_movies_without_users(sample):
    movies = "1::Amélie (2001)::Comedy|Romance\n2::Untitled::(no genres listed)\n".encode()
    raw = get_reader("movielens")(sample("movielens-1m", {"movies.dat": movies, "users.dat": None,
                                                          "ratings.dat": b"7::1::4.5::1\n"}))
    assert rows(raw.items) == [("1", "Amélie (2001)", ["Comedy", "Romance"], 2001), ("2", "Untitled", [], NA)]
    assert raw.users is None
    assert rows(raw.interactions) == [("7", "1", 4.5, 1)]


def test_movielens_csv_release(sample):
    raw = get_reader("movielens")(sample("movielens-csv"))
    assert rows(raw.interactions) == [("1", "1", 4.0, 964982703), ("1", "3", 4.5, 964981247),
                                      ("2", "1", 0.5, 1445714835)]
    assert rows(raw.items) == [
        ("1", "Toy Story (1995)", ["Adventure", "Animation", "Children", "Comedy", "Fantasy"], 1995),
        ("3", "American President, The (1995)", ["Comedy", "Drama", "Romance"], 1995),
        ("5", "Pokémon Heroes (2003)", [], 2003),
    ]
    assert raw.users is None


def test_movielens_100k_real(shared_data):
    raw = get_reader("movielens")(shared_data / "ml-100k")
    inter = raw.interactions
    assert len(inter) == 100_000
    assert inter["user_id"].nunique() == 943 and inter["item_id"].nunique() == 1_682
    assert inter["rating"].between(1, 5).all() and inter["timestamp"].notna().all()
    items = raw.items.set_index("item_id")
    assert len(items) == 1_682 and set(items.index) == set(inter["item_id"])
    assert items.loc["1", "title"] == "Toy Story (1995)"
    assert items.loc["1", "genres"] == ["Animation", "Children's", "Comedy"]
    assert items.loc["1", "year"] == 1995
    assert items.loc["543", "title"] == "Misérables, Les (1995)"
    assert items["year"].notna().sum() == 1_680  # "unknown" (267) and one title carry no year
    assert len(raw.users) == 943 and raw.users["age"].min() > 0


# ------------------------------------------------------------------ LightGCN
def test_lightgcn_integer_ids_and_users_without_items(sample):
    raw = get_reader("lightgcn")(sample("lightgcn"))
    assert_interaction_dtypes(raw)
    assert rows(raw.interactions, ["user_id", "item_id", "split"]) == [
        ("0", "0", "train"), ("0", "1", "train"), ("1", "2", "train"), ("0", "2", "valid"),
        ("1", "0", "test"), ("1", "1", "test")]
    assert raw.user_universe == ["0", "1", "2"]  # user 2 has a line but no items
    assert raw.item_universe == ["0", "1", "2"]
    assert raw.interactions["rating"].isna().all() and raw.interactions["timestamp"].isna().all()


def test_lightgcn_original_ids_from_lists_in_remap_order(sample):
    raw = get_reader("lightgcn")(sample("lightgcn-lists"))
    assert rows(raw.interactions, ["user_id", "item_id", "split"]) == [
        ("alice", "900", "train"), ("bob", "700", "train"), ("bob", "800", "train"), ("bob", "900", "test")]
    assert raw.user_universe == ["bob", "alice"]
    assert raw.item_universe == ["900", "700", "800"]


def test_lightgcn_validation_dir(sample):
    src = sample("lightgcn", {"valid.txt": None, "validation/train.txt": b"0 0\n1\n2 1\n",
                              "validation/valid.txt": b"0 1\n"})
    raw = read_lightgcn(src, validation_dir="validation")
    assert rows(raw.interactions, ["user_id", "item_id", "split"]) == [
        ("0", "0", "train"), ("2", "1", "train"), ("0", "1", "valid"), ("1", "0", "test"), ("1", "1", "test")]
    assert raw.source["files"]["train"].endswith("validation/train.txt")


def test_lightgcn_round_trip_through_text_keeps_interactions(sample, tmp_path):
    """Writing the parsed lists back out and reading them again gives the same interactions."""
    raw = get_reader("lightgcn")(sample("lightgcn"))
    out = tmp_path / "again"
    out.mkdir()
    for split, name in (("train", "train.txt"), ("valid", "valid.txt"), ("test", "test.txt")):
        part = raw.interactions[raw.interactions["split"] == split]
        lines = [" ".join([user, *group["item_id"]]) for user, group in part.groupby("user_id", sort=False)]
        if split == "train":
            lines += [u for u in raw.user_universe if u not in set(part["user_id"])]
        (out / name).write_text("\n".join(lines) + "\n")
    again = get_reader("lightgcn")(out)
    pd.testing.assert_frame_equal(again.interactions, raw.interactions)
    assert again.user_universe == raw.user_universe and again.item_universe == raw.item_universe


@pytest.mark.slow
def test_lightgcn_gowalla_real(shared_data):
    raw = read_lightgcn(shared_data / "gowalla")
    assert raw.interactions["split"].value_counts().to_dict() == {"train": 810_128, "test": 217_242}
    assert len(raw.user_universe) == 29_858 and len(raw.item_universe) == 40_981
    # original ids from user_list.txt / item_list.txt, universe in remap order
    assert raw.user_universe[:2] == ["343", "5258"] and raw.item_universe[0] == "8975"
    assert raw.interactions["user_id"].iloc[0] == "343"


@pytest.mark.slow
def test_lightgcn_gowalla_validation_real(shared_data):
    raw = read_lightgcn(shared_data / "gowalla", validation_dir="validation")
    assert raw.interactions["split"].value_counts().to_dict() == {"train": 719_081, "valid": 91_047,
                                                                  "test": 217_242}
    assert len(raw.user_universe) == 29_858 and len(raw.item_universe) == 40_981


@pytest.mark.slow
def test_lightgcn_ml1m_real(shared_data):
    raw = read_lightgcn(shared_data / "ml-1m-lightgcn")
    assert raw.interactions["split"].value_counts().to_dict() == {"train": 590_733, "valid": 80_897,
                                                                  "test": 164_848}
    assert len(raw.user_universe) == 6_039 and raw.item_universe == [str(i) for i in range(3_628)]


# ---------------------------------------------------------------- JSON split
def test_json_split_with_id_maps(sample):
    raw = get_reader("json-split")(sample("json-split"))
    assert_interaction_dtypes(raw)
    assert rows(raw.interactions, ["user_id", "item_id", "split"]) == [
        ("A1USER", "B0002", "train"), ("A1USER", "B0001", "train"), ("A2USER", "B0003", "train"),
        ("A2USER", "B0001", "valid"), ("A1USER", "B0003", "test")]
    assert raw.user_universe == ["A1USER", "A2USER"]
    assert raw.item_universe == ["B0001", "B0002", "B0003"]


def test_json_split_without_maps_keeps_indices(sample):
    raw = get_reader("json-split")(sample("json-split", {"user2id.json": None, "item2id.json": None,
                                                         "val.json": None, "valid.json": b'{"3": [4], "5": []}'}))
    assert rows(raw.interactions, ["user_id", "item_id", "split"]) == [
        ("0", "1", "train"), ("0", "0", "train"), ("1", "2", "train"), ("3", "4", "valid"), ("0", "2", "test")]
    # user 5 has an empty list: it exists, without interactions
    assert raw.user_universe == ["0", "1", "2", "3", "4", "5"] and raw.item_universe == ["0", "1", "2", "3", "4"]


def test_json_split_string_items_without_maps(sample):
    raw = get_reader("json-split")(sample("json-split", {
        "user2id.json": None, "item2id.json": None, "val.json": None,
        "train.json": b'{"u1": ["x", "y"]}', "test.json": b'{"u2": ["x"]}'}))
    assert rows(raw.interactions, ["user_id", "item_id", "split"]) == [
        ("u1", "x", "train"), ("u1", "y", "train"), ("u2", "x", "test")]
    assert raw.user_universe is None and raw.item_universe is None


@pytest.mark.slow
def test_json_split_amazon_baby_real(shared_data):
    import json

    src = shared_data / "amazon-baby-5core"
    raw = get_reader("json-split")(src)
    inter = raw.interactions
    assert inter["split"].value_counts().to_dict() == {"train": 119_674, "valid": 20_559, "test": 20_559}
    assert inter["user_id"].nunique() == 19_445 and inter["item_id"].nunique() == 7_050
    assert len(raw.user_universe) == 19_445 and len(raw.item_universe) == 7_050
    item2id = json.loads((src / "item2id.json").read_text())
    assert [item2id[asin] for asin in raw.item_universe[:5]] == [0, 1, 2, 3, 4]
    first_user = raw.user_universe[0]
    train_items = inter[(inter["user_id"] == first_user) & (inter["split"] == "train")]["item_id"]
    expected = json.loads((src / "train.json").read_text())["0"]
    assert [item2id[asin] for asin in train_items] == expected


# --------------------------------------------------------------------- MMRec
def test_mmrec_interactions_splits_and_features(sample):
    raw = get_reader("mmrec")(sample("mmrec"))
    assert_interaction_dtypes(raw)
    assert rows(raw.interactions) == [("0", "1", 5.0, 1400000000, "train"), ("1", "0", 3.0, 1400000100, "valid"),
                                      ("0", "2", 4.0, 1400000200, "test")]
    assert raw.user_universe == ["0", "1"]
    assert raw.item_universe == ["0", "1", "2", "3"]  # the feature files list a fourth item
    ids, matrix, meta = raw.features["image"]
    assert ids == ["0", "1", "2", "3"] and np.array_equal(matrix, np.arange(12).reshape(4, 3))
    assert Path(meta["source"]).name == "image_feat.npy"
    assert np.allclose(raw.features["text"][1], [[0.0, 0.1], [0.2, 0.3], [0.4, 0.5], [0.6, 0.7]])
    assert any("without interactions" in note for note in raw.notes)


def test_mmrec_id_mappings_and_name_option(sample):
    src = sample("mmrec", {"other.inter": b"userID\titemID\n0\t0\n",
                           "u_id_mapping.csv": b"user_id\tuserID\nAZ\t1\nAY\t0\n",
                           "i_id_mapping.csv": b"asin\titemID\nI0\t0\nI1\t1\nI2\t2\nI3\t3\n"})
    with pytest.raises(DataFormatError, match=r"several \.inter files"):
        get_reader("mmrec")(src)
    raw = get_reader("mmrec")(src, name="toy")
    assert rows(raw.interactions, ["user_id", "item_id", "split"]) == [
        ("AY", "I1", "train"), ("AZ", "I0", "valid"), ("AY", "I2", "test")]
    assert raw.user_universe == ["AY", "AZ"] and raw.item_universe == ["I0", "I1", "I2", "I3"]
    assert raw.features["image"][0] == ["I0", "I1", "I2", "I3"]


# ------------------------------------------------------------------- RecBole
def test_recbole_atomic_files(sample):
    raw = get_reader("recbole")(sample("recbole"), name="toy")
    assert_interaction_dtypes(raw)
    assert not raw.has_split
    assert rows(raw.interactions) == [("u1", "i1", 5.0, 881250949), ("u2", "i2", 3.5, 881250950),
                                      ("u1", "i2", NA, NA)]
    assert rows(raw.items, ["item_id", "title", "year", "genres", "price", "embedding"]) == [
        ("i2", "The Big Sleep", 1946, ["Crime", "Film-Noir"], 9.5, [0.5, 1.5]),
        ("i1", "Toy Story", 1995, ["Animation"], NA, []),
        ("i3", "Heat", NA, ["Action", "Crime"], 4.0, [2.0]),
    ]
    assert rows(raw.users) == [("u2", "49", "M"), ("u1", "24", "F")]
    assert raw.item_universe == ["i2", "i1", "i3"] and raw.user_universe == ["u2", "u1"]


def test_recbole_benchmark_files_give_the_split(sample):
    src = sample("recbole-benchmark")
    raw = get_reader("recbole")(src / "toy.train.inter")  # the path of one file also works
    assert rows(raw.interactions, ["user_id", "item_id", "split"]) == [
        ("u1", "i1", "train"), ("u2", "i2", "train"), ("u1", "i2", "valid"), ("u2", "i1", "test")]
    assert raw.source["benchmark"] is True


def test_recbole_categories_and_brand(sample):
    item = b"item_id:token\ttitle:token\tcategories:token_seq\tbrand:token\nx\tA hat\tHats Caps\tAcme\n"
    raw = get_reader("recbole")(sample("recbole", {"toy.item": item, "toy.user": None}), name="toy")
    assert rows(raw.items) == [("x", "A hat", ["Hats", "Caps"], "Acme")]


# -------------------------------------------------------------------- Amazon
def test_amazon_2014_gzipped_python_literal_metadata(sample):
    raw = get_reader("amazon")(sample("amazon-2014"))
    assert_interaction_dtypes(raw)
    assert rows(raw.interactions) == [("A1", "B001", 5.0, 1370563200), ("A2", "B002", 3.0, 1370649600)]
    assert rows(raw.items) == [
        ("B001", "Soft Blanket", "A warm blanket.", ["Baby", "Nursery", "Bedding"], "Cozy",
         "http://ecx.images-amazon.com/images/I/1.jpg"),
        ("B003", NA, NA, ["Baby"], NA, NA),
    ]
    assert raw.source["release"] == "2014/2018"


def test_amazon_python_literal_reviews(sample, tmp_path):
    path = tmp_path / "reviews.json"
    path.write_text("{'reviewerID': 'A1', 'asin': 'B1', 'overall': 4.0, 'unixReviewTime': 5}\n"
                    "{'reviewerID': 'A2', 'asin': 'B1', 'overall': 2}\n")
    raw = get_reader("amazon")(path)
    assert rows(raw.interactions) == [("A1", "B1", 4.0, 5), ("A2", "B1", 2.0, NA)]


def test_amazon_2018_strict_json(sample):
    raw = get_reader("amazon")(sample("amazon-2018"))
    assert rows(raw.interactions) == [("R1", "X1", 4.0, 1514764800), ("R2", "X1", 1.0, 1514851200)]
    assert rows(raw.items) == [
        ("X1", "Stroller", "Light. Folds flat.", ["Baby", "Strollers"], "Go", "http://l/1.jpg"),
        ("X2", NA, NA, [], NA, NA),
    ]
    assert any("1 repeated metadata lines" in note for note in raw.notes)


def test_amazon_2023_jsonl_with_meta_option(sample, tmp_path):
    src = sample("amazon-2023")
    meta = src / "meta_Baby_Products.jsonl"
    moved = tmp_path / "elsewhere.jsonl"
    moved.write_bytes(meta.read_bytes())
    meta.unlink()
    raw = get_reader("amazon")(src / "Baby_Products.jsonl", meta=moved)
    assert rows(raw.interactions) == [("U1", "C1", 5.0, 1588615855), ("U1", "C2", 2.0, 1588615856)]
    assert rows(raw.items) == [("C1", "Bottle", "Glass bottle. Dishwasher safe.", ["Baby Products", "Feeding"],
                                "Glassy", "http://L/1.jpg")]
    assert raw.source["release"] == "2023"


# --------------------------------------------------------------- CSV/Parquet
def test_csv_default_columns(sample):
    raw = get_reader("csv")(sample("csv") / "interactions.csv")
    assert_interaction_dtypes(raw)
    assert rows(raw.interactions) == [("u1", "i1", 4.0, 1600000000, "train"), ("u1", "i2", NA, 1600000100, "valid"),
                                      ("u2", "i,3", 2.5, NA, "test")]
    assert any("comment" in note for note in raw.notes)


def test_csv_column_mapping_separator_and_iso_times(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text("who;what;when\nann;x;2021-03-04T05:06:07Z\nbob;y;2021-03-04\n")
    raw = get_reader("csv")(path, columns={"user": "who", "item": "what", "timestamp": "when"}, sep=";")
    assert rows(raw.interactions) == [("ann", "x", NA, 1614834367), ("bob", "y", NA, 1614816000)]
    assert not raw.has_split


def test_parquet_typed_columns(sample):
    raw = get_reader("parquet")(sample("parquet") / "interactions.parquet",
                                columns={"user": "uid", "item": "iid", "rating": "stars", "timestamp": "when"})
    assert_interaction_dtypes(raw)
    assert rows(raw.interactions) == [("10", "a", 5.0, 1577836801, "train"), ("11", "b", NA, 1577923200, "test"),
                                      ("10", "b", 1.0, NA, "valid")]


def test_parquet_values_of_the_wrong_type_are_located(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"user": [1, None, 3], "item": ["a", "b", "c"]}).to_parquet(path)
    with pytest.raises(DataFormatError, match="user id is missing") as caught:
        get_reader("parquet")(path)
    assert (caught.value.line, caught.value.field) == (2, "user")
    pd.DataFrame({"user": [1, 2], "item": ["a", "b"], "rating": [[1.0], [2.0]]}).to_parquet(path)
    with pytest.raises(DataFormatError, match="cannot hold the rating") as caught:
        get_reader("parquet")(path)
    assert caught.value.field == "rating"


def test_windows_line_endings_and_byte_order_mark(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"\xef\xbb\xbfuser,item,rating\r\nu1,i1,5\r\n\r\nu2,i2,x\r\n")
    with pytest.raises(DataFormatError, match="'x' is not a number") as caught:
        get_reader("csv")(path)
    assert (caught.value.line, caught.value.field) == (4, "rating")  # the blank line 3 is not a row
    path.write_bytes(b"\xef\xbb\xbfuser,item,rating\r\nu1,i1,5\r\n")
    assert rows(get_reader("csv")(path).interactions) == [("u1", "i1", 5.0, NA)]


def test_table_options_are_checked(sample):
    with pytest.raises(GraphrecError, match="unknown column role"):
        get_reader("csv")(sample("csv") / "interactions.csv", columns={"usr": "user_id"})


# -------------------------------------------------------------------- errors
def assert_located(error: DataFormatError, file_name: str, line: int | None, field: str | None) -> None:
    assert Path(error.path).name == file_name
    assert error.line == line
    assert error.field == field
    message = str(error)
    assert file_name in message
    if line is not None:
        assert f"line {line}" in message
    if field is not None:
        assert repr(field) in message


# format, sample, files replaced, reader options, file, line, field, message fragment
ERROR_CASES = [
    # malformed lines: the expected separator is named
    ("movielens", "movielens-100k", {"u.data": b"1\t2\t3\t4\n5\t6\t7\n"}, {}, "u.data", 2, "timestamp",
     "expected 4 tab-separated fields"),
    ("movielens", "movielens-100k", {"u.data": b"1\t2\t3\t4\t5\n"}, {}, "u.data", 1, "timestamp",
     "found 5"),
    ("movielens", "movielens-1m", {"ratings.dat": b"1::2::3::4\n1::2::3\n"}, {}, "ratings.dat", 2, "timestamp",
     "'::'-separated"),
    ("movielens", "movielens-1m", {"movies.dat": b"1::Toy Story (1995)\n"}, {}, "movies.dat", 1, "Genres",
     "expected 3 '::'-separated"),
    ("movielens", "movielens-100k", {"u.item": b"1|A|||\n"}, {}, "u.item", 1, "genre_0", "pipe-separated"),
    ("movielens", "movielens-100k", {"u.item": lambda items: items + b"242|Kolya again|||" + b"|0" * 19 + b"\n"},
     {}, "u.item", 4, "item", "id 242 is listed more than once"),
    ("movielens", "movielens-1m", {"users.dat": b"1::F::1::10::48067\n1::M::56::16::70072\n"}, {}, "users.dat",
     2, "user", "id 1 is listed more than once"),
    ("mmrec", "mmrec", {"toy.inter": b"userID\titemID\n0\t1\n0\n"}, {}, "toy.inter", 3, "itemID",
     "expected 2 tab-separated fields"),
    ("recbole", "recbole", {"toy.inter": b"user_id:token\titem_id:token\nu1\ti1\tx\n"}, {"name": "toy"},
     "toy.inter", 2, "item_id:token", "found 3"),
    ("csv", "csv", {"interactions.csv": b"user,item\nu,i,extra\n"}, {}, "interactions.csv", 2, "item",
     "comma-separated"),
    # non-integer ids where ids must be integers
    ("movielens", "movielens-100k", {"u.data": b"196\t242\t3\t1\nabc\t242\t3\t1\n"}, {}, "u.data", 2, "user",
     "'abc' is not an integer"),
    ("lightgcn", "lightgcn", {"train.txt": b"0 1\n1 2 x3\n"}, {}, "train.txt", 2, "item 2",
     "'x3' is not a non-negative integer"),
    ("lightgcn", "lightgcn", {"test.txt": b"-1 0\n"}, {}, "test.txt", 1, "user", "'-1' is not a non-negative"),
    ("lightgcn", "lightgcn", {"train.txt": b"0 99999999999999999999\n"}, {}, "train.txt", 1, "item 1",
     "too large"),
    ("mmrec", "mmrec", {"toy.inter": b"userID\titemID\nu1\t0\n"}, {}, "toy.inter", 2, "userID",
     "'u1' is not an integer"),
    ("movielens", "movielens-100k", {"u.user": b"1|old|M|writer|1\n"}, {}, "u.user", 1, "age",
     "'old' is not an integer"),
    # ratings that are not numbers
    ("movielens", "movielens-100k", {"u.data": b"1\t2\tgood\t4\n"}, {}, "u.data", 1, "rating",
     "'good' is not a number"),
    ("movielens", "movielens-csv", {"ratings.csv": b"userId,movieId,rating,timestamp\n1,2,inf,3\n"}, {},
     "ratings.csv", 2, "rating", "not a finite number"),
    ("recbole", "recbole", {"toy.inter": b"user_id:token\titem_id:token\trating:float\nu\ti\t4,5\n"},
     {"name": "toy"}, "toy.inter", 2, "rating", "is not a number"),
    ("mmrec", "mmrec", {"toy.inter": b"userID\titemID\trating\n0\t0\tfive\n"}, {}, "toy.inter", 2, "rating",
     "not a number"),
    ("csv", "csv", {"interactions.csv": b"user,item,rating\nu,i,1\nu,j,x\n"}, {}, "interactions.csv", 3, "rating",
     "'x' is not a number"),
    ("amazon", "amazon-2018", {"Baby.json": b'{"reviewerID": "R", "asin": "A", "overall": 1}\n'
                                            b'{"reviewerID": "R", "asin": "B", "overall": "five"}\n'}, {},
     "Baby.json", 2, "overall", "'five' is not a number"),
    # split labels
    ("mmrec", "mmrec", {"toy.inter": b"userID\titemID\tx_label\n0\t0\t0\n0\t1\t3\n"}, {}, "toy.inter", 3,
     "x_label", "'3' is not one of train/valid/test or 0/1/2"),
    ("csv", "csv", {"interactions.csv": b"user,item,split\nu,i,train\nu,j,validation\n"}, {}, "interactions.csv",
     3, "split", "'validation' is not one of"),
    # unparsable JSON, reported at its line
    ("json-split", "json-split", {"train.json": b'{\n"0": [1],\n"1": [2,,]\n}'}, {}, "train.json", 3, None,
     "invalid JSON"),
    ("amazon", "amazon-2018", {"Baby.json": b'{"reviewerID": "R", "asin": "A", "overall": 1}\n{"reviewerID": \n'},
     {}, "Baby.json", 2, None, "invalid JSON"),
    ("amazon", "amazon-2014", {"meta_Baby.json.gz": gzip.compress(b"{'asin': 'B1'}\n{'asin': 'B2',\n")}, {},
     "meta_Baby.json.gz", 2, None, "invalid JSON"),
    # structure and consistency
    ("json-split", "json-split", {"train.json": b'{"0": [1],\n "0": [2]}'}, {}, "train.json", 1, "0",
     "appears more than once"),
    ("json-split", "json-split", {"test.json": b'{"0": [1],\n "1": 2}'}, {}, "test.json", 2, "1",
     "expected a list of items"),
    ("json-split", "json-split", {"test.json": b'{"0": [1],\n "1": [7]}'}, {}, "test.json", 2, "1",
     "item index 7 is not in item2id.json"),
    ("amazon", "amazon-2023", {"Baby_Products.jsonl": b'{"user_id": "U", "parent_asin": "P", "rating": 1}\n'
                                                      b'{"user_id": "U", "rating": 1}\n'}, {},
     "Baby_Products.jsonl", 2, "parent_asin", "id is missing"),
    ("amazon", "amazon-2018", {"meta_Baby.json": b'{"asin": "X1", "description": {"a": 1}}\n'}, {},
     "meta_Baby.json", 1, "description", "expected a list of strings"),
    ("recbole", "recbole", {"toy.item": b"item_id\ttitle:token\nx\ty\n"}, {"name": "toy"}, "toy.item", 1,
     "item_id", "has no type"),
    ("recbole", "recbole", {"toy.item": b"item_id:token\tsize:int\nx\t1\n"}, {"name": "toy"}, "toy.item", 1,
     "size", "unknown type 'int'"),
    ("movielens", "movielens-csv", {"ratings.csv": b"userId,movieId,timestamp\n1,2,3\n"}, {}, "ratings.csv", 1,
     "rating", "has no 'rating' column"),
    ("lightgcn", "lightgcn-lists", {"item_list.txt": b"org_id remap_id\n900 0\n700 2\n"}, {}, "item_list.txt",
     None, "remap_id", "1 is missing or repeated"),
    ("lightgcn", "lightgcn-lists", {"item_list.txt": b"org_id remap_id\n900 0\n"}, {}, "item_list.txt", None,
     "remap_id", "use item index 2"),
    ("mmrec", "mmrec", {"image_feat.npy": lambda npy: npy[:-12]}, {}, "image_feat.npy", None,
     None, "not a readable .npy"),
    # text that is not in its encoding
    ("csv", "csv", {"interactions.csv": b"user,item\nu,i\nu,\xff\n"}, {}, "interactions.csv", 3, None,
     "not valid utf-8"),
    ("lightgcn", "lightgcn", {"train.txt": b"0 1\n1 \xe9\n"}, {}, "train.txt", 2, "item 1",
     "is not a non-negative integer"),
    # empty input
    ("movielens", "movielens-100k", {"u.data": b""}, {}, "u.data", None, None, "is empty"),
    ("movielens", "movielens-1m", {"ratings.dat": b"\n\n"}, {}, "ratings.dat", None, None, "is empty"),
    ("lightgcn", "lightgcn", {"train.txt": b""}, {}, "train.txt", None, None, "is empty"),
    ("json-split", "json-split", {"val.json": b"  \n"}, {}, "val.json", None, None, "is empty"),
    ("amazon", "amazon-2023", {"Baby_Products.jsonl": b""}, {}, "Baby_Products.jsonl", None, None, "is empty"),
    ("recbole", "recbole", {"toy.inter": b""}, {"name": "toy"}, "toy.inter", None, None, "is empty"),
    ("csv", "csv", {"interactions.csv": b""}, {}, "interactions.csv", None, None, "is empty"),
    ("parquet", "parquet", {"interactions.parquet": b"PAR1 not really"}, {}, "interactions.parquet", None, None,
     "not a readable Parquet file"),
    # missing required files name the file expected
    ("lightgcn", "lightgcn", {"test.txt": None}, {}, "test.txt", None, None, "'test.txt' is missing"),
    ("lightgcn", "lightgcn", {}, {"validation_dir": "validation"}, "validation", None, None,
     "validation directory 'validation' is missing"),
    ("json-split", "json-split", {"train.json": None}, {}, "train.json", None, None, "'train.json' is missing"),
    ("recbole", "recbole", {"toy.inter": None}, {"name": "toy"}, "toy.inter", None, None, "'toy.inter' is missing"),
    ("recbole", "recbole-benchmark", {"toy.test.inter": None}, {"name": "toy"}, "toy.test.inter", None, None,
     "'toy.test.inter' is missing"),
]


@pytest.mark.parametrize(("format", "name", "replace", "options", "file_name", "line", "field", "fragment"),
                         ERROR_CASES, ids=[f"{c[0]}-{c[4]}-{i}" for i, c in enumerate(ERROR_CASES)])
def test_bad_input_is_reported_with_file_line_and_field(sample, format, name, replace, options, file_name, line,
                                                        field, fragment):
    src = sample(name, replace)
    if format in ("csv", "parquet"):
        src = src / file_name
    with pytest.raises(DataFormatError) as caught:
        get_reader(format)(src, **options)
    assert fragment in caught.value.reason
    assert_located(caught.value, file_name, line, field)


@pytest.mark.parametrize(("format", "name", "expected"), [
    ("movielens", "movielens-100k", "expected u.data, ratings.dat or ratings.csv"),
    ("mmrec", "mmrec", "has no .inter file"),
    ("amazon", "amazon-2018", "expected exactly one reviews file"),
])
def test_directory_without_the_main_file(sample, samples, format, name, expected):
    src = sample(name, {file_name: None for file_name in samples[name]})
    with pytest.raises(DataFormatError, match=expected) as caught:
        get_reader(format)(src)
    assert Path(caught.value.path) == src


def npy_bytes(matrix: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, matrix)
    return buffer.getvalue()


def test_mmrec_feature_rows_are_checked_against_items(sample):
    with pytest.raises(DataFormatError, match=r"has 2 rows but toy\.inter uses item ids up to 2") as caught:
        get_reader("mmrec")(sample("mmrec", {"text_feat.npy": npy_bytes(np.zeros((2, 2), np.float32))}))
    assert Path(caught.value.path).name == "text_feat.npy"
    with pytest.raises(DataFormatError, match="disagree on the number of items"):
        get_reader("mmrec")(sample("mmrec", {"text_feat.npy": npy_bytes(np.zeros((5, 2), np.float32))}))
    with pytest.raises(DataFormatError, match="expected a 2-D numeric matrix"):
        get_reader("mmrec")(sample("mmrec", {"text_feat.npy": npy_bytes(np.zeros(4, np.float32))}))


def test_corrupt_gzip_is_a_data_format_error(sample):
    with pytest.raises(DataFormatError, match="gzip") as caught:
        get_reader("amazon")(sample("amazon-2014", {"reviews_Baby_5.json.gz": lambda gz: gz[:30]}))
    assert Path(caught.value.path).name == "reviews_Baby_5.json.gz"
