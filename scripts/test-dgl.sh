#!/usr/bin/env bash
# Run graphrec's DGL interop tests in their own environment, .venv-dgl.
#
# DGL's last Linux release on PyPI (2.1.0) works only with torch <= 2.2.1, while graphrec's core
# runs on current torch, so DGL lives in a separate virtual environment built from
# requirements-dgl.txt, with graphrec installed into it without its dependencies.
# The environment is reused when present; it is rebuilt when requirements-dgl.txt changes.
#
#   bash scripts/test-dgl.sh [pytest arguments...]
#   PYTHON_DGL=/path/to/python3.11 VENV_DGL=/tmp/venv bash scripts/test-dgl.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
python_bin=${PYTHON_DGL:-python3.11}
venv=${VENV_DGL:-.venv-dgl}
stamp="$venv/.graphrec-dgl-installed"

if [[ ! -f $stamp || requirements-dgl.txt -nt $stamp ]]; then
    if ! command -v "$python_bin" >/dev/null; then
        echo "test-dgl: $python_bin not found; DGL 2.1.0 has wheels for Python 3.8 to 3.11 only" \
             "(set PYTHON_DGL to a Python 3.11 interpreter)" >&2
        exit 2
    fi
    started=$SECONDS
    echo "test-dgl: building $venv (torch 2.2.1 + dgl 2.1.0; the first build downloads about 3 GB and takes 4 minutes)"
    [[ -x $venv/bin/python ]] || "$python_bin" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dgl.txt
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
    touch "$stamp"
    echo "test-dgl: $venv ready in $((SECONDS - started)) s"
fi

# DGLBACKEND: without it DGL writes its choice of backend to ~/.dgl/config.json on first import.
DGLBACKEND=pytorch GRAPHREC_REQUIRE_DGL=1 exec "$venv/bin/python" -m pytest tests/interop/test_dgl.py "$@"
