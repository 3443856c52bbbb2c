"""Conversion and loading speed on the real LightGCN-format sets (Gowalla, MovieLens-1M).

Each measurement runs in a fresh process (so peak RSS is that step's own). The
baseline, measured in the same run, is the LightGCN reference's way of reading
the same split files (``train.txt``, ``valid.txt`` where the conversion reads one, ``test.txt``):
a Python loop over lines building lists
(LightGCN-PyTorch ``dataloader.Loader``). Conversion time is reported as a ratio
against it; loading the converted dataset against ``np.load`` of a plain
``(2, n)`` int64 edge array, the floor for reading the same interactions.

Run: ``.venv/bin/python benchmarks/convert.py`` (about a minute). ``--quick`` is the smoke test: one
repeat on a 500-user Gowalla-format excerpt, with and without its validation split, written to
``results/smoke/convert.json``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _common import DATA, print_table, results_dir, run_child, tiny_gowalla, write_results

CONVERT = """
import json, sys, time
t = time.perf_counter()
from graphrec.data.convert import ConvertConfig, convert
imported = time.perf_counter()
result = convert("lightgcn", sys.argv[1], sys.argv[2], ConvertConfig(split="given"), overwrite=True,
                 reader_options={"validation_dir": sys.argv[3]} if sys.argv[3] != "-" else {})
done = time.perf_counter()
print(json.dumps({"seconds": done - imported, "interactions": result.dataset.num_interactions}))
"""

REFERENCE_READ = """
import json, sys, time
import numpy as np
t = time.perf_counter()
count = 0
for path in sys.argv[1:]:
    users, items = [], []
    with open(path) as f:
        for line in f:
            parts = line.strip().split(" ")
            if len(parts) > 1:
                uid = int(parts[0]); its = [int(i) for i in parts[1:]]
                users.extend([uid] * len(its)); items.extend(its)
    count += len(np.array(users)); np.array(items)
print(json.dumps({"seconds": time.perf_counter() - t, "interactions": count}))
"""

LOAD = """
import json, sys, time
from graphrec.data.dataset import load_dataset
t = time.perf_counter()
d = load_dataset(sys.argv[1])
u, i = d.pairs("train")
print(json.dumps({"seconds": time.perf_counter() - t, "interactions": d.num_interactions}))
"""

NPY_LOAD = """
import json, sys, time
import numpy as np
t = time.perf_counter()
edges = np.load(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "interactions": edges.shape[1]}))
"""

WRITE_NPY = """
import json, sys
import numpy as np
from graphrec.data.dataset import load_dataset
d = load_dataset(sys.argv[1])
np.save(sys.argv[2], np.stack([d.interactions["user"].to_numpy().astype("int64"),
                               d.interactions["item"].to_numpy().astype("int64")]))
print(json.dumps({}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="take the best of this many runs")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: one repeat on a small Gowalla excerpt (writes results/smoke/)")
    args = parser.parse_args()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="graphrec-bench-"))
    try:
        if args.quick:
            args.repeats = 1
            sets = [("tiny-gowalla", tiny_gowalla(work / "tiny-gowalla-source"), "-"),
                    ("tiny-gowalla+valid", work / "tiny-gowalla-source", "validation")]
        else:
            sets = [("gowalla", DATA / "gowalla", "-"), ("gowalla+valid", DATA / "gowalla", "validation"),
                    ("ml-1m-lightgcn", DATA / "ml-1m-lightgcn", "-")]
        for name, src, validation in sets:
            dst = work / name
            conv = min((run_child(CONVERT, str(src), str(dst), validation) for _ in range(args.repeats)),
                       key=lambda r: r["seconds"])
            # the reference reads exactly the files the conversion reads
            split_files = ([src / validation / "train.txt", src / validation / "valid.txt", src / "test.txt"]
                           if validation != "-" else [src / f for f in ("train.txt", "valid.txt", "test.txt")
                                                      if (src / f).is_file()])
            ref = min((run_child(REFERENCE_READ, *map(str, split_files)) for _ in range(args.repeats)),
                      key=lambda r: r["seconds"])
            if ref["interactions"] != conv["interactions"]:
                raise RuntimeError(f"{name}: the reference read {ref['interactions']:,} interactions and the "
                                   f"conversion {conv['interactions']:,}: the ratio would compare unequal work")
            load = min((run_child(LOAD, str(dst)) for _ in range(args.repeats)), key=lambda r: r["seconds"])
            run_child(WRITE_NPY, str(dst), str(work / f"{name}.npy"))
            floor = min((run_child(NPY_LOAD, str(work / f"{name}.npy")) for _ in range(args.repeats)),
                        key=lambda r: r["seconds"])
            rows.append({
                "dataset": name, "interactions": conv["interactions"],
                "convert_s": conv["seconds"], "convert_peak_rss_mib": conv["peak_rss_mib"],
                "reference_read_s": ref["seconds"], "convert_vs_reference_read": conv["seconds"] / ref["seconds"],
                "load_s": load["seconds"], "npy_load_s": floor["seconds"],
                "load_vs_npy": load["seconds"] / floor["seconds"],
            })
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, ["dataset", "interactions", "convert_s", "reference_read_s", "convert_vs_reference_read",
                       "convert_peak_rss_mib", "load_s", "npy_load_s", "load_vs_npy"])
    write_results("convert", {"rows": rows, "targets": {"gowalla_convert_s": 5.0, "gowalla_load_s": 0.5}},
                  results_dir(partial=args.quick))


if __name__ == "__main__":
    main()
