"""The command line, run as a real subprocess: exit codes, JSON output, error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def graphrec(*args, check=True):
    completed = subprocess.run([sys.executable, "-m", "graphrec", *map(str, args)], capture_output=True, text=True)
    if check and completed.returncode != 0:
        raise AssertionError(f"graphrec {args} failed ({completed.returncode}):\n{completed.stderr}")
    return completed


def test_convert_info_export(shared_data, tmp_path):
    dst = tmp_path / "ml"
    out = graphrec("convert", "movielens", shared_data / "ml-100k", dst, "--min-rating", "3", "--kcore", "5",
                   "--split", "random", "--ratios", "0.8,0.1,0.1", "--seed", "4").stdout
    assert "users" in out and "kcore" in out and "min_rating" in out
    info = json.loads(graphrec("info", dst, "--json").stdout)
    assert set(info) >= {"num_users", "num_items", "num_interactions", "splits", "modalities"}
    assert sum(info["splits"].values()) == info["num_interactions"]
    assert info["modalities"] == []
    graphrec("export", dst, tmp_path / "rb", "--format", "recbole")
    assert (tmp_path / "rb" / "ml.train.inter").is_file()


def test_existing_destination_is_refused(shared_data, tmp_path):
    dst = tmp_path / "ml"
    graphrec("convert", "movielens", shared_data / "ml-100k", dst)
    again = graphrec("convert", "movielens", shared_data / "ml-100k", dst, check=False)
    assert again.returncode != 0 and "--overwrite" in again.stderr


@pytest.mark.parametrize("content, needle", [
    ("1\t2\t3\t881250949\n1\tfoo\t3\t881250949\n", "line 2"),
    ("1,2,3,881250949\n", "line 1"),
])
def test_bad_input_names_file_line_and_field(tmp_path, content, needle):
    src = tmp_path / "ml"
    src.mkdir()
    (src / "u.data").write_text(content)
    result = graphrec("convert", "movielens", src, tmp_path / "out", check=False)
    assert result.returncode != 0
    assert "u.data" in result.stderr and needle in result.stderr and "field" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_format_and_missing_source(tmp_path):
    result = graphrec("convert", "nosuch", tmp_path, tmp_path / "o", check=False)
    assert result.returncode != 0 and "unknown format" in result.stderr
    result = graphrec("convert", "lightgcn", tmp_path / "missing", tmp_path / "o", check=False)
    assert result.returncode != 0 and "missing" in result.stderr
