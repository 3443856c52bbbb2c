"""Every benchmark's ``--quick`` mode, run as a real subprocess on the real data.

Each benchmark in ``benchmarks/`` takes ``--quick``: a tiny version of itself, end to end, that writes
its results under ``benchmarks/results/smoke/`` (git-ignored) and never over the committed results
(``benchmarks/_common.py`` describes the convention). A quick mode that cannot run on this machine prints
a line starting with ``BENCHMARK SKIPPED:`` and its reason and exits 0; that case is reported here as
skipped, not passed. All of them together take 70 to 80 s on two busy cores, once ``multimodal.py``
has prepared its datasets under ``runs/multimodal-bench`` (the first run encodes them: about 20 s more).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO_ROOT / "benchmarks"
SMOKE = BENCHMARKS / "results" / "smoke"
#: Where the benchmarks read the real datasets (``benchmarks/_common.py``'s ``DATA``).
DATA = Path(os.environ.get("GRAPHREC_DATA", REPO_ROOT.parent / "shared" / "data"))
#: ``benchmarks/_common.py``'s ``SKIPPED``: the start of the line a quick mode prints when it cannot run.
SKIPPED = "BENCHMARK SKIPPED:"

#: Every benchmark, with the files its quick mode writes under results/smoke/ (the JSON first).
QUICK_OUTPUTS = {
    "cold_users.py": ["cold_users.json"],
    "convert.py": ["convert.json"],
    "encode.py": ["encode.json"],
    "gowalla_lightgcn.py": ["gowalla_lightgcn.json", "gowalla_lightgcn_curves.png"],
    "gpu_gowalla.py": ["gpu_gowalla.json"],
    "graph_filter_kernels.py": ["graph_filter_kernels.json"],
    "graph_filters.py": ["graph_filters.json", "graph_filters.md"],
    "lazy_adam.py": ["lazy_adam.json"],
    "mmrec_compare.py": ["mmrec_compare.json", "mmrec_compare.md"],
    "modality_ablation.py": ["modality_ablation.json", "modality_ablation.md"],
    "multimodal.py": ["multimodal.json", "multimodal.md", "multimodal.png"],
    "multimodal_graph_filter.py": ["multimodal_graph_filter.json"],
    "recbole_compare.py": ["recbole_compare.json"],
    "scale.py": ["scale.json", "scale.md", "scale.png"],
    "serve.py": ["serve.json"],
    "user_sources.py": ["user_sources.json"],
}
#: The benchmarks whose quick mode reads none of the real datasets.
NO_DATA = {"encode.py", "lazy_adam.py", "mmrec_compare.py", "modality_ablation.py"}
#: Scripts in benchmarks/ that are no benchmark of their own (modules starting with ``_`` are helpers too).
NOT_BENCHMARKS = {
    "mmrec_runner.py": "MMRec's half of mmrec_compare.py; it runs in ../mmrec-venv, never imports graphrec, and "
                       "mmrec_compare.py --quick starts it when that venv and ../shared/peers/mmrec exist",
    "recbole_runner.py": "RecBole's half of recbole_compare.py; it runs in benchmarks/.venv-recbole, never imports "
                         "graphrec, and recbole_compare.py --quick starts it when that venv exists",
}


def test_every_benchmark_has_a_quick_run():
    scripts = {path.name for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_")}
    assert scripts == set(QUICK_OUTPUTS) | set(NOT_BENCHMARKS)
    for script in QUICK_OUTPUTS:
        assert "--quick" in (BENCHMARKS / script).read_text(), f"{script} has no --quick mode"


@pytest.mark.slow  # a real subprocess each, 6 to 25 s on two cores
@pytest.mark.parametrize("script", list(QUICK_OUTPUTS))
def test_quick_mode(script: str):
    if script not in NO_DATA and not DATA.is_dir():
        pytest.skip(f"needs the real datasets at {DATA}, which is missing (they are not redistributed with the "
                    "repository; see ../shared/data/README.md, or set GRAPHREC_DATA)")
    outputs = [SMOKE / name for name in QUICK_OUTPUTS[script]]
    for path in outputs:  # so that what is checked below is this run's
        path.unlink(missing_ok=True)
    command = [sys.executable, str(BENCHMARKS / script), "--quick"]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "GRAPHREC_DATA": str(DATA)})
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, (f"{' '.join(command)} exited with {completed.returncode}\n"
                                       f"stdout:\n{completed.stdout[-4000:]}\nstderr:\n{completed.stderr[-4000:]}")
    skipped = [line for line in completed.stdout.splitlines() if line.startswith(SKIPPED)]
    if skipped:
        pytest.skip(f"{script} --quick: {skipped[-1]}")
    missing = [path.name for path in outputs if not path.is_file() or path.stat().st_size == 0]
    assert not missing, f"{script} --quick did not write {missing} under {SMOKE}:\n{output[-4000:]}"
    result = json.loads(outputs[0].read_text())
    assert isinstance(result, dict) and result
    if result.get("skipped"):  # ran, but left a part out (recbole_compare or mmrec_compare without the peer's venv)
        warnings.warn(f"{script} --quick: {result['skipped']}", stacklevel=1)


@pytest.mark.slow  # twelve one-epoch runs in a subprocess, about a minute on two busy cores
def test_multimodal_ablation_quick_mode():
    """``multimodal.py --ablation --quick``: validation figures only, with the attention spread per row."""
    if not DATA.is_dir():
        pytest.skip(f"needs the real datasets at {DATA}")
    output = SMOKE / "multimodal_ablation.json"
    output.unlink(missing_ok=True)
    command = [sys.executable, str(BENCHMARKS / "multimodal.py"), "--ablation", "--quick"]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400,
                               env={**os.environ, "GRAPHREC_DATA": str(DATA)})
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(output.read_text())
    assert {row["protocol"] for row in result["table"]} == {"synthetic", "ml100k_warm", "ml100k_cold"}
    assert all("test" not in run for run in result["runs"])  # choosing never looks at the test split
    assert all(0 <= row["recall@20"] <= 1 and row["entropy"] is not None for row in result["table"])
    table_lines = (SMOKE / "multimodal_ablation.md").read_text().count("\n|")
    assert table_lines == len(result["table"]) + 2  # the rows, the header and its rule


@pytest.mark.slow  # seven one-epoch runs in a subprocess, about half a minute once ml-100k is encoded
def test_multimodal_paired_quick_mode():
    """``multimodal.py --paired-seeds 2 --quick``: FREEDOM's options chosen on validation, then ModalityGAT and
    FREEDOM against LightGCN seed by seed, each paired difference matching the seeds' own figures."""
    if not DATA.is_dir():
        pytest.skip(f"needs the real datasets at {DATA}")
    output = SMOKE / "multimodal_warm_paired.json"
    output.unlink(missing_ok=True)
    command = [sys.executable, str(BENCHMARKS / "multimodal.py"), "--paired-seeds", "2", "--quick"]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400,
                               env={**os.environ, "GRAPHREC_DATA": str(DATA)})
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(output.read_text())
    assert result["freedom_grid"] and all("test" not in record for record in result["freedom_grid"])
    values = {entry["label"]: entry["test recall@20"]["values"] for entry in result["table"]}
    assert set(values) == {"LightGCN", "ModalityGAT", "FREEDOM"}
    for model in ("ModalityGAT", "FREEDOM"):
        paired = result["comparisons"][model]["paired"]
        assert paired["baseline"] == "LightGCN" and paired["seeds"] == 2
        assert paired["values"] == pytest.approx([a - b for a, b in zip(values[model], values["LightGCN"])])
    markdown = (SMOKE / "multimodal_warm_paired.md").read_text()
    assert "FREEDOM − LightGCN" in markdown and markdown.count("\n| 1 |") == 1


@pytest.mark.slow  # three quick runs in subprocesses, two of them at once: about 40 s
def test_mmrec_compare_runs_of_other_arms_extend_one_file_at_once():
    """``mmrec_compare.py --extend`` in two processes at once, on different ``--arms``: the file ends with the
    arms of both and those it held before, each with its seeds."""
    script = str(BENCHMARKS / "mmrec_compare.py")
    output = SMOKE / "mmrec_compare.json"
    output.unlink(missing_ok=True)
    env = {**os.environ, "GRAPHREC_DATA": str(DATA)}
    first = subprocess.run([sys.executable, script, "--quick", "--arms", "graphrec LightGCN"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=400, env=env)
    assert first.returncode == 0, first.stderr[-4000:]
    both = [subprocess.Popen([sys.executable, script, "--quick", "--extend", "--arms", arms], cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            for arms in ("graphrec VBPR", "graphrec mmgf,graphrec FREEDOM")]
    for process in both:
        _, stderr = process.communicate(timeout=400)
        assert process.returncode == 0, stderr[-4000:]
    regime = json.loads(output.read_text())["regimes"]["quick"]
    expected = {"graphrec LightGCN", "graphrec VBPR", "graphrec mmgf", "graphrec FREEDOM"}
    assert set(regime["runs"]) == set(regime["summary"]) == expected
    assert all(len(runs) == 2 for runs in regime["runs"].values())  # --quick trains seeds 0 and 1
