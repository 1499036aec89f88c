"""Loss terms as pure tensor functions, one per term; attacks compose them, nothing here holds state.

``kkt``: the KKT-reconstruction terms (stationarity, dual feasibility, input-box prior).
``inversion``: the generator/TLDR terms (KL, CE, feature cosine, orthogonality, TV, pixel range, gradient norm).
"""

from .inversion import *  # noqa: F403
from .inversion import __all__ as _inversion_all
from .kkt import *  # noqa: F403
from .kkt import __all__ as _kkt_all

__all__ = [*_inversion_all, *_kkt_all]
