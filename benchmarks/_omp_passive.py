"""Imported for its effect, before torch: PyTorch's OpenMP threads wait passively unless told otherwise.

PyTorch's OpenMP threads spin while they wait; on a CPU shared with other jobs that makes each small
sparse product many times slower (measured in ``multimodal.py``: 4 s instead of 0.04 s per GAT step).
OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads it, so a benchmark imports this module above
``import torch``: ``import _omp_passive`` sorts first among the third-party imports.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
