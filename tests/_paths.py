"""Where the real datasets live: ``../shared/data`` beside the repository (see its README.md).

This is the one place the test suite spells that path. Tests take it from the session fixture
``shared_data`` (``tests/conftest.py``), which skips a test, with the reason, when the folder is
missing. Code that needs it outside a test, at import time (``pytest.mark.skipif`` conditions,
parametrisation), imports ``SHARED_DATA``, ``HAVE_SHARED_DATA`` and ``MISSING_SHARED_DATA`` from here
(``tests/`` is on ``sys.path`` because pytest imports ``tests/conftest.py`` from it).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
HAVE_SHARED_DATA = SHARED_DATA.is_dir()
MISSING_SHARED_DATA = (f"needs the real datasets at {SHARED_DATA}, which is missing "
                       "(they are not redistributed with the repository; see ../shared/data/README.md)")
