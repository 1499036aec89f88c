"""Loss terms as pure tensor functions, one per term; attacks compose them, nothing here holds state.

``kkt``: the KKT-reconstruction terms (stationarity, dual feasibility, input-box prior).
``inversion``: the generator/TLDR terms (KL, CE, feature cosine, orthogonality, TV, pixel range, gradient norm).
"""

from .inversion import *  # noqa: F403
from .kkt import *  # noqa: F403
