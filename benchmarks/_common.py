"""Helpers shared by the benchmark scripts: locating data, timing children, printing tables, writing JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# GRAPHREC_DATA points elsewhere, e.g. on a machine where ../shared is not beside the checkout.
DATA = Path(os.environ.get("GRAPHREC_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"
#: Where smoke and partial runs write (git-ignored), so that they never replace the committed results.
SMOKE_RESULTS = RESULTS / "smoke"


def run_child(code: str, *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh Python; it must print one JSON object last. Adds wall time and peak RSS.

    ``os.wait4`` gives this child's own resource usage, so peak RSS is not mixed with earlier children.
    """
    started = time.perf_counter()
    # stderr goes to a file: reading two pipes one after the other deadlocks once the child has
    # filled the second (64 KiB of log lines) while the parent still waits on the first.
    with tempfile.TemporaryFile(mode="w+") as errors:
        process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=errors,
                                   text=True)
        stdout = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        errors.seek(0)
        stderr = errors.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))


def write_results(name: str, payload: dict[str, Any], directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    payload = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(), **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)
