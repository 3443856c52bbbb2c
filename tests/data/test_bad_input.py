"""Bad input stops with the file, line and field, and nothing is dropped without a word."""

from __future__ import annotations

import pytest

from graphrec.data.convert import convert
from graphrec.errors import DataFormatError, GraphrecError


def test_a_row_of_empty_fields_is_an_error_but_blank_lines_are_not_rows(tmp_path):
    (tmp_path / "blank.csv").write_text("user,item,rating\nu1,i1,5\n\nu3,i3,3\n")
    assert convert("csv", tmp_path / "blank.csv", tmp_path / "a").dataset.num_interactions == 2
    (tmp_path / "empty.csv").write_text("user,item,rating\nu1,i1,5\n,,\nu3,i3,3\n")
    with pytest.raises(DataFormatError, match=r"empty.csv, line 3, field 'user'"):
        convert("csv", tmp_path / "empty.csv", tmp_path / "b")


def test_a_quoted_value_over_two_lines_is_reported_at_its_line(tmp_path):
    (tmp_path / "nl.csv").write_text('user,item,rating\nu1,i1,5\nu2,"i\n2",4\nu3,i3,bad\n')
    with pytest.raises(DataFormatError, match=r"nl.csv, line 3, field 'item': a quoted value spans"):
        convert("csv", tmp_path / "nl.csv", tmp_path / "out")


def test_repeated_original_ids_in_a_lightgcn_list_are_named(tmp_path):
    (tmp_path / "train.txt").write_text("0 0 1\n1 0 2\n")
    (tmp_path / "test.txt").write_text("0 2\n")
    (tmp_path / "item_list.txt").write_text("org_id remap_id\na 0\nb 1\na 2\n")
    with pytest.raises(DataFormatError, match="line 4, field 'org_id': original item id 'a' is listed more than once"):
        convert("lightgcn", tmp_path, tmp_path / "out")


def test_repeated_original_ids_in_an_mmrec_map_are_named(tmp_path):
    (tmp_path / "toy.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n1\t1\t0\n")
    (tmp_path / "i_id_mapping.csv").write_text("asin\titemID\nA0\t0\nA0\t1\n")
    with pytest.raises(DataFormatError, match=r"i_id_mapping\.csv, line 3, field 'asin'"):
        convert("mmrec", tmp_path, tmp_path / "out")


def test_movielens_notes_fractional_timestamps(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,100.7\n1,2,3.5,101.2\n2,1,5,102\n")
    result = convert("movielens", tmp_path, tmp_path / "out")
    assert any("2 fractional timestamps in ratings.csv were rounded down" in note for note in result.notes)


def test_a_conversion_cannot_replace_its_source_and_sep_is_for_csv_only(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "t.csv").write_text("user,item\nu1,i1\n")
    with pytest.raises(GraphrecError, match="which this command reads"):
        convert("csv", tmp_path / "src" / "t.csv", tmp_path / "src", overwrite=True)
    assert (tmp_path / "src" / "t.csv").is_file()
    convert("csv", tmp_path / "src" / "t.csv", tmp_path / "ds")
    with pytest.raises(GraphrecError, match="--sep applies to csv only"):
        convert("parquet", tmp_path / "ds" / "interactions.parquet", tmp_path / "p", reader_options={"sep": ";"})


def test_an_amazon_timestamp_beyond_64_bits_is_named(tmp_path):
    # found by the fuzz test: a float timestamp too large for int64 overflowed inside pandas
    (tmp_path / "Baby.json").write_text(
        '{"overall": 4.0, "reviewerID": "R1", "asin": "X1", "unixReviewTime": 1514764800}\n'
        '{"overall": 1.0, "reviewerID": "R2", "asin": "X1", "unixReviewTime": 151485e200}\n')
    with pytest.raises(DataFormatError, match=r"line 2, field 'unixReviewTime': timestamp .* is out of range"):
        convert("amazon", tmp_path / "Baby.json", tmp_path / "out")
