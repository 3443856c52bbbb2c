"""Helpers shared by the benchmark scripts: paths, child processes, tables, result files, plots, skipping.

Every benchmark writes its results through :func:`write_results` (JSON with the command line and the
machine, atomically, through :func:`graphrec.data.storage.write_json`, which ``gpu_gowalla.py`` calls
directly for its own schema) and :func:`write_markdown` (Markdown, atomically, keeping the file's static
section, see below), prints and renders tables with :func:`print_table` and :func:`markdown_table`, and
gets its plotting module from :func:`pyplot`.

**Static text in the committed Markdown.** A committed ``results/*.md`` may end with a section that no
benchmark generates: history, such as earlier runs, commit hashes and old figures. It starts at the line
:data:`STATIC_MARKER`; :func:`write_markdown` keeps everything from that line on when it rewrites the
file, so a rerun replaces only what the run measured.

**Quick modes.** Every benchmark takes ``--quick``: a tiny version, end to end, in seconds, written to
:data:`SMOKE_RESULTS` (git-ignored), never over the committed results; ``tests/test_benchmarks.py`` runs
them all. One that cannot run at all on this machine calls :func:`skip`, which prints a line starting with
:data:`SKIPPED` and the reason and exits 0; the test reports it as skipped, not passed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
# The benchmarks import graphrec from this checkout even where it is not installed (say, a GPU machine
# given the repository and a Python with its dependencies). Every benchmark imports this module before
# graphrec: isort puts ``_common`` (third-party to it) above ``graphrec`` (first-party), so no script needs
# a sys.path statement of its own between its imports. (This module imports graphrec inside functions.)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# GRAPHREC_DATA points elsewhere, e.g. on a machine where ../shared is not beside the checkout.
DATA = Path(os.environ.get("GRAPHREC_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"
#: Where smoke and partial runs write (git-ignored), so that they never replace the committed results.
SMOKE_RESULTS = RESULTS / "smoke"
#: First line of the static section of a committed Markdown result (see the module docstring).
STATIC_MARKER = "<!-- static: not generated; the benchmark keeps this line and the rest when it rewrites the file -->"
#: How a quick mode that cannot run here starts the one line it prints before exiting 0 (:func:`skip`).
SKIPPED = "BENCHMARK SKIPPED:"


def results_dir(partial: bool) -> Path:
    """:data:`SMOKE_RESULTS` for a smoke or partial run, else :data:`RESULTS`."""
    return SMOKE_RESULTS if partial else RESULTS


def skip(reason: str) -> NoReturn:
    """End a quick mode that cannot run here: print ``SKIPPED reason`` and exit 0 (see the module docstring)."""
    print(f"{SKIPPED} {reason}", flush=True)
    sys.exit(0)


def require_data(*folders: str) -> None:
    """Skip (:func:`skip`) unless every ``folders`` entry exists under :data:`DATA` (quick modes only: a
    full run without its data fails instead)."""
    missing = [folder for folder in folders if not (DATA / folder).exists()]
    if missing:
        skip(f"needs {', '.join(missing)} under {DATA} (the real datasets; set GRAPHREC_DATA to their folder)")


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


# ------------------------------------------------------------------------------------------ tables
def fmt(value: Any) -> str:
    """A table cell: floats to 4 significant digits (whole numbers from 1,000), ``None`` empty."""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def fmt_grouped(value: Any) -> str:
    """:func:`fmt`, with thousands separators in integers too."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return fmt(value)


def fmt_4f(value: Any) -> str:
    """Floats with 4 decimals, anything else as ``str``."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def columns_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every key of ``rows``, in order of first appearance."""
    return list(dict.fromkeys(c for row in rows for c in row))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(fmt(row.get(c)).ljust(widths[c]) for c in columns))


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None,
                   cell: Callable[[Any], str] = str) -> list[str]:
    """The lines of a Markdown table of ``rows`` (``columns``: default every key); a missing value is empty."""
    columns = columns_of(rows) if columns is None else columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) if c in row else "" for c in columns) + " |" for row in rows]
    return lines


# ------------------------------------------------------------------------------------------ result files
def shown(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_results(name: str, payload: dict[str, Any], directory: Path = RESULTS) -> Path:
    """Write ``directory/NAME.json``: ``payload`` after the command line and the machine, atomically."""
    from graphrec.data.storage import write_json

    path = directory / f"{name}.json"
    write_json(path, {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(), **payload})
    print(f"\nwrote {shown(path)}")
    return path


def static_section(path: Path) -> str:
    """The text of ``path`` from the :data:`STATIC_MARKER` line on ("" without the file or the marker)."""
    if not path.is_file():
        return ""
    text = path.read_text()
    start = text.find(STATIC_MARKER)
    return "" if start < 0 else text[start:]


def write_markdown(path: Path, text: str) -> None:
    """Write the generated ``text`` to ``path`` atomically, followed by the file's static section if it has one."""
    from graphrec.data.storage import atomic_file

    static = static_section(path)
    if static:
        text = text.rstrip("\n") + "\n\n" + static
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    print(f"wrote {shown(path)}")


# ------------------------------------------------------------------------------------------ plots
def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (benchmarks only write image files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------------------ quick-mode data
def tiny_gowalla(dst: Path, users: int = 500) -> Path:
    """A Gowalla-format copy of the first ``users`` users of ``DATA/gowalla`` (quick modes), in ``dst``.

    Same files as the real set (``train.txt``, ``test.txt``, ``validation/train.txt`` and ``valid.txt``,
    LightGCN's ``user item item ...`` lines), the items those users reach renumbered 0, 1, ... in their
    original order so that the universe is dense. Skips (:func:`skip`) without the real set.
    """
    require_data("gowalla")
    source = DATA / "gowalla"
    files = ["train.txt", "test.txt", "validation/train.txt", "validation/valid.txt"]
    kept = {name: [line.split() for line in (source / name).read_text().splitlines()
                   if line.strip() and int(line.split(maxsplit=1)[0]) < users] for name in files}
    items = sorted({int(item) for rows in kept.values() for row in rows for item in row[1:]})
    renumber = {str(item): str(index) for index, item in enumerate(items)}
    for name, rows in kept.items():
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        (dst / name).write_text("".join(" ".join([row[0], *(renumber[i] for i in row[1:])]) + "\n" for row in rows))
    return dst
