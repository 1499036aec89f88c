"""When may one input shape be read as another? Flattening and splitting dimensions keep every value where it was
(a C×H×W image as C·H·W numbers, or as C×(H·W)); a reshape that reorders axes does not (C×H×W read as H×W×C
scrambles every image without any error)."""

from __future__ import annotations

import math
from collections.abc import Sequence

#: values in one input (67 M: a 3×4096×4096 image passes; a forged shape does not)
MAX_INPUT_VALUES = 1 << 26


def _boundaries(shape: Sequence[int]) -> set[int]:
    """Cumulative products of the non-singleton dimensions: where the shape splits the flat row of values."""
    dims = [int(d) for d in shape if int(d) != 1]
    return {math.prod(dims[:i + 1]) for i in range(len(dims))}


def same_layout(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether inputs shaped ``a`` can be reshaped to ``b`` by merging or splitting neighbouring dimensions only.

    Example:
        >>> same_layout((1, 8, 8), (64,)), same_layout((3, 32, 32), (3, 1024)), same_layout((3, 32, 32), (32, 32, 3))
        (True, True, False)
    """
    if math.prod(a) != math.prod(b):
        return False
    ba, bb = _boundaries(a), _boundaries(b)
    return ba <= bb or bb <= ba


def check_layout(data_shape: Sequence[int], model_shape: Sequence[int]) -> None:
    """One-line ModelError when data shaped ``data_shape`` would be reshaped into ``model_shape`` by anything but
    merging or splitting dimensions (e.g. C×H×W into a channels-last model)."""
    if not same_layout(data_shape, model_shape):
        from .._errors import ModelError

        raise ModelError(f"the model takes inputs shaped {tuple(model_shape)}, the data is {tuple(data_shape)}: not "
                         "a flattening or split of its dimensions, so reading one as the other would misplace values "
                         "(e.g. channels moved last)", layout_hint(data_shape, model_shape))


def layout_hint(data_shape: Sequence[int], model_shape: Sequence[int]) -> str:
    """The fix for a model whose inputs hold the data's values in another order (channels last, mostly)."""
    d, m = tuple(int(v) for v in data_shape), tuple(int(v) for v in model_shape)
    if len(d) == 3 and m == (d[1], d[2], d[0]):
        return ("the model takes channels-last images; wrap it to take N×C×H×W, e.g. forward(x) = "
                "model(x.permute(0, 2, 3, 1)), and export that")
    return f"give inputs shaped {m}, or wrap the model to take {d} and export that"
