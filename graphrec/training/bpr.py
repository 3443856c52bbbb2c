"""Bayesian Personalised Ranking loss (Rendle et al., 2009).

.. math::
    \\mathcal{L} = \\frac{1}{|B|} \\sum_{(u, i, j) \\in B} -\\ln \\sigma(\\hat y_{ui} - \\hat y_{uj})
                  + \\lambda \\cdot \\frac{1}{2|B|} \\sum (\\|e_u^{(0)}\\|^2 + \\|e_i^{(0)}\\|^2 + \\|e_j^{(0)}\\|^2)

The L2 term is on the batch's layer-0 embeddings, as in LightGCN; models provide it
through ``Recommender.regularization``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(positive_scores: torch.Tensor, negative_scores: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log sigmoid(pos - neg)``, computed stably as ``softplus(neg - pos)``."""
    return F.softplus(negative_scores - positive_scores).mean()
