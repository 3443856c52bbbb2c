"""Run every example with ``--smoke`` as a real subprocess, on the real data, and check what it printed and wrote."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"


def metric(pattern: str, text: str) -> float:
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{pattern!r} not found in the output:\n{text[-4000:]}"
    return float(match.group(1))


def scores(prefix: str, text: str) -> dict[str, float]:
    """``prefix: a 0.1, b 0.2`` -> {"a": 0.1, "b": 0.2}."""
    match = re.search(rf"^{re.escape(prefix)}: (.+)$", text, re.MULTILINE)
    assert match, f"no line starting with {prefix!r} in the output:\n{text[-4000:]}"
    return {name: float(value) for name, value in (part.rsplit(" ", 1) for part in match.group(1).split(", "))}


def check_gowalla(text: str, out: Path, sampling: str) -> None:
    assert "note: example sample: kept the" in text and "kcore: removed" in text
    recall = metric(r"^test recall@20 = ([0-9.]+)", text)
    assert 0.02 < recall <= 1.0  # random ranking of ~2,000 items gives about 0.01
    assert "paper (LightGCN, 3 layers, d=64): recall@20 = 0.1830" in text
    metrics = json.loads((out / f"lightgcn-{sampling}" / "metrics.json").read_text())
    assert metrics["sampling"] == sampling
    assert metrics["test"]["recall@20"] == pytest.approx(recall, abs=1e-4)
    assert (out / f"lightgcn-{sampling}" / "curves.png").stat().st_size > 0


def check_movielens(text: str, out: Path) -> None:
    assert "min_rating: removed 17,480 interactions" in text
    assert re.search(r"added modality 'text': features/text\.npy \(441 x 384, 0 missing\)", text)
    for model in ("lightgcn", "gat"):
        row = re.search(rf"^{model}\s+\d+\s+[0-9.]+\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s*$", text,
                        re.MULTILINE)
        assert row, f"no table row for {model}:\n{text[-4000:]}"
        test_recall = float(row.group(3))
        assert 0.05 < test_recall <= 1.0  # popularity alone scores far above random on ml-100k; a model must too
        assert json.loads((out / model / "metrics.json").read_text())["test"]["recall@20"] == pytest.approx(
            test_recall, abs=1e-4)
    assert re.search(r"^GAT source attention, mean over movies: text [0-9.]+, genre [0-9.]+$", text, re.MULTILINE)
    assert len(re.findall(r"^user \d+ \(\d+ movies rated >= 3 in training\) -> gat recommends$", text,
                          re.MULTILINE)) == 3
    assert len(re.findall(r"^\s+\d\. .+ score\s+-?[0-9.]+\s+attention text [0-9.]+, genre [0-9.]+$", text,
                          re.MULTILINE)) == 15
    assert text.count("because you liked: ") == 15


def check_cold_start(text: str, out: Path) -> None:
    assert "note: 24 cold items (20%) held out of training" in text
    assert "added modality 'image'" in text and "added modality 'text'" in text
    ndcg = scores("cold-start ndcg@10", text)
    assert set(ndcg) == {"random", "pop", "vbpr", "gat"}
    assert all(0.0 <= value <= 1.0 for value in ndcg.values())
    # Content places cold items: the better content model beats chance among the cold items.
    assert max(ndcg["vbpr"], ndcg["gat"]) > ndcg["random"]
    assert re.search(r"^== a new user picks 5 items with colour = '\w+'$", text, re.MULTILINE)
    for model in ("vbpr", "gat"):
        assert re.search(rf"^new user, {model}: \d+% of the 10 recommendations have colour", text, re.MULTILINE)
        assert json.loads((out / model / "metrics.json").read_text())["test_cold"]["ndcg@10"] == pytest.approx(
            ndcg[model], abs=1e-4)


def check_distributed(text: str, out: Path) -> None:
    assert "distributed: 2 processes (gloo)" in text
    assert "world size 2, backend gloo" in text
    checksums = re.findall(r"^  rank (\d) parameters sha256 ([0-9a-f]{64})$", text, re.MULTILINE)
    assert [rank for rank, _ in checksums] == ["0", "1"] and checksums[0][1] == checksums[1][1]
    assert "checksums identical across ranks: True" in text
    assert 0.02 < metric(r"^test recall@20 = ([0-9.]+)", text) <= 1.0
    metrics = json.loads((out / "lightgcn-2proc" / "metrics.json").read_text())
    assert metrics["distributed"]["rank_checksums"] == [checksums[0][1], checksums[1][1]]


def check_amazon(text: str, out: Path) -> None:
    assert "deduplicate: removed 2 interactions" in text
    assert re.search(r"kcore: removed [\d,]+ interactions", text)
    assert "note: 5 items in the metadata have no interactions" in text
    summary_users = int(metric(r"^  users\s+([\d,]+)$", text.replace(",", "")))
    summary_items = int(metric(r"^  items\s+([\d,]+)$", text.replace(",", "")))
    name = "amazon-baby"
    for split in ("train", "valid", "test"):
        assert (out / "recbole" / f"{name}.{split}.inter").stat().st_size > 0
    assert len((out / "recbole" / f"{name}.user").read_text().splitlines()) == summary_users + 1
    assert len((out / "recbole" / f"{name}.item").read_text().splitlines()) == summary_items + 1
    assert re.search(rf"^mmrec: text_feat\.npy\s+{summary_items}x384$", text, re.MULTILINE)
    assert (out / "mmrec" / f"{name}.inter").read_text().splitlines()[0].split("\t") == [
        "userID", "itemID", "rating", "timestamp", "x_label"]
    assert (out / "raw" / "meta_Baby.json.gz").is_file()


@dataclass(frozen=True)
class Example:
    script: str
    check: Callable[[str, Path], None]
    extra_args: tuple[str, ...] = field(default=())


CASES = {
    "gowalla-full": Example("train_lightgcn_gowalla.py", lambda text, out: check_gowalla(text, out, "full")),
    "gowalla-neighbor": Example("train_lightgcn_gowalla.py", lambda text, out: check_gowalla(text, out, "neighbor"),
                                ("--sampling", "neighbor", "--epochs", "2")),
    "movielens": Example("train_multimodal_movielens.py", check_movielens),
    "cold-start": Example("cold_start.py", check_cold_start),
    "distributed": Example("distributed_train.py", check_distributed),
    "amazon": Example("convert_amazon.py", check_amazon),
}


@pytest.mark.slow  # a real subprocess each, 8 to 15 s on two cores
@pytest.mark.parametrize("case", list(CASES))
def test_example_smoke_run(case: str, request: pytest.FixtureRequest, tmp_path: Path):
    example = CASES[case]
    out = tmp_path / "out"
    command = [sys.executable, str(EXAMPLES / example.script), "--smoke", "--out", str(out)]
    if example.script != "convert_amazon.py":  # the only example that reads no real dataset (nor skips without)
        command += ["--data-root", str(request.getfixturevalue("shared_data"))]
    completed = subprocess.run([*command, *example.extra_args], capture_output=True, text=True, cwd=tmp_path,
                               timeout=600)
    assert completed.returncode == 0, (f"{' '.join(command)} exited with {completed.returncode}\n"
                                       f"stdout:\n{completed.stdout[-4000:]}\nstderr:\n{completed.stderr[-4000:]}")
    example.check(completed.stdout, out)


def test_every_example_is_tested_documented_and_listed():
    scripts = sorted(path.name for path in EXAMPLES.glob("*.py"))
    assert sorted({case.script for case in CASES.values()}) == scripts
    readme = (EXAMPLES / "README.md").read_text()
    for script in scripts:
        source = (EXAMPLES / script).read_text()
        docstring = re.match(r'"""(.+?)"""', source, re.DOTALL)
        assert docstring, f"{script} does not open with a docstring"
        for section in ("What it shows", "How to run", "Expected output", "--smoke"):
            assert section in docstring.group(1), f"{script}'s docstring lacks {section!r}"
        assert f"`{script}`" in readme, f"examples/README.md does not list {script}"
