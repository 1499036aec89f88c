"""Constraints on a query's input bits, in three forms that must agree: a vectorised NumPy check, a generator of
cheap random candidates that satisfy it (tried, and checked by the model, before any solver: issue 5), and CNF."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import ConfigError
from .cardinality import Encoding, cardinality
from .encode import BNNFormula, PlainBNN


@dataclass(frozen=True)
class InputConstraints:
    """Constraints on the input (all optional; they combine with AND). Inputs are data space, like the model's.

    Attributes:
        fixed: an input whose pixels under ``mask`` are kept (as the bits the model reads from them).
        mask: bool, shaped like one input (or flat): pixels of ``fixed`` to keep. Default with ``fixed``: all.
        center: an input; with ``radius``, only inputs within Hamming distance ``radius`` of its bits.
        radius: the Hamming radius around ``center``.
        min_on: at least this many input bits set.
        max_on: at most this many input bits set.
    """

    fixed: Any = None
    mask: Any = None
    center: Any = None
    radius: int | None = None
    min_on: int | None = None
    max_on: int | None = None

    def summary(self) -> dict[str, Any]:
        """What the constraints fix, as recorded in a result (no arrays: the fixed-pixel count, radius, on-bounds)."""
        m = None if self.mask is None else int(np.asarray(self.mask).astype(bool).sum())
        return {"fixed_pixels": m if self.fixed is not None else None, "radius": self.radius,
                "has_center": self.center is not None, "min_on": self.min_on, "max_on": self.max_on}


@dataclass(frozen=True)
class BitConstraints:
    """:class:`InputConstraints` resolved to bits of one model (fixed includes the model's constant pixels)."""

    fixed_idx: np.ndarray  # (F,) int
    fixed_val: np.ndarray  # (F,) bool
    center: np.ndarray | None  # (D,) bool
    radius: int | None
    min_on: int | None
    max_on: int | None

    def check(self, bits: np.ndarray) -> np.ndarray:
        """(N, D) bool -> (N,) bool: which rows satisfy every constraint."""
        ok = (bits[:, self.fixed_idx] == self.fixed_val).all(1)
        if self.center is not None:
            ok &= (bits != self.center).sum(1) <= self.radius
        on = bits.sum(1)
        if self.min_on is not None:
            ok &= on >= self.min_on
        if self.max_on is not None:
            ok &= on <= self.max_on
        return ok


def resolve(cons: InputConstraints | None, plain: PlainBNN) -> BitConstraints:
    """Check the user's constraints and turn them into bits. Raises ConfigError on bad shapes or values."""
    cons = cons or InputConstraints()
    d = plain.num_inputs
    fixed = plain.fixed_bits >= 0
    val = plain.fixed_bits == 1
    if cons.fixed is not None:
        bits = plain.binarize(cons.fixed)
        if bits.shape[0] != 1:
            raise ConfigError("constraint 'fixed' holds several inputs", "give one input")
        mask = np.ones(d, bool) if cons.mask is None else np.asarray(cons.mask).astype(bool).reshape(-1)
        if mask.shape[0] != d:
            raise ConfigError(f"mask has {mask.shape[0]} pixels, the model {d}", "give a mask shaped like one input")
        clash = fixed & mask & (val != bits[0])
        if clash.any():
            raise ConfigError(f"{int(clash.sum())} fixed pixels ask for a bit the data range cannot give",
                              "fix pixels only to values inside the model's input range")
        val = np.where(mask, bits[0], val)
        fixed |= mask
    elif cons.mask is not None:
        raise ConfigError("a mask was given without the input it keeps", "pass fixed=<input> with mask")
    center = None
    if (cons.center is None) != (cons.radius is None):
        raise ConfigError("a Hamming ball needs both center and radius", "give both, or neither")
    if cons.center is not None:
        center = plain.binarize(cons.center)
        if center.shape[0] != 1:
            raise ConfigError("constraint 'center' holds several inputs", "give one input")
        center = center[0]
        if int(cons.radius) < 0:
            raise ConfigError(f"radius {cons.radius} is negative", "give a radius >= 0")
    for name in ("min_on", "max_on"):
        v = getattr(cons, name)
        if v is not None and not 0 <= int(v) <= d:
            raise ConfigError(f"{name}={v} is outside 0..{d}", f"give {name} between 0 and {d}")
    if cons.min_on is not None and cons.max_on is not None and cons.min_on > cons.max_on:
        raise ConfigError(f"min_on={cons.min_on} exceeds max_on={cons.max_on}", "give min_on <= max_on")
    idx = np.flatnonzero(fixed)
    return BitConstraints(idx, val[idx], center, None if cons.radius is None else int(cons.radius),
                          cons.min_on, cons.max_on)


def constraint_clauses(bc: BitConstraints, f: BNNFormula) -> list[list[int]]:
    """CNF for ``bc`` over the formula's input variables (units, Hamming ball, on-count bounds)."""
    xs = f.x_vars
    clauses = [[xs[j] if v else -xs[j]] for j, v in zip(bc.fixed_idx.tolist(), bc.fixed_val.tolist(), strict=True)]

    def at(lits: list[int], bound: int, rel: str, name: str) -> None:
        k = bound + 1 if rel == "<=" else bound
        small = min(k, len(lits) - k + 1) * len(lits) < 200_000  # totalizer size ~ n * min(k, n-k); else adder
        o, cl = cardinality(lits, bound, rel, vpool=f.vpool, encoding=Encoding.TOTALIZER if small else Encoding.ADDER,
                            name=("cons", name, f.vpool.top))
        clauses.extend(cl)
        clauses.append([o])

    if bc.center is not None:
        at([-x if c else x for x, c in zip(xs, bc.center.tolist(), strict=True)], bc.radius, "<=", "ball")
    if bc.min_on is not None:
        at(list(xs), bc.min_on, ">=", "min_on")
    if bc.max_on is not None:
        at(list(xs), bc.max_on, "<=", "max_on")
    return clauses


def random_candidates(bc: BitConstraints, d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random inputs (n, D) bool drawn to respect the constraints where cheap (then filtered by check)."""
    free = np.ones(d, bool)
    free[bc.fixed_idx] = False
    if bc.center is not None:  # flip r ~ U{0..radius} random free pixels of the centre
        keys = np.where(free, rng.random((n, d)), np.inf)
        rank = keys.argsort(1).argsort(1)
        r = rng.integers(0, min(bc.radius, int(free.sum())) + 1, size=(n, 1))
        bits = bc.center[None, :] ^ (rank < r)
    else:
        lo = (bc.min_on or 0) / d
        hi = (bc.max_on if bc.max_on is not None else d) / d
        p = rng.uniform(lo, hi, size=(n, 1)) if (bc.min_on is not None or bc.max_on is not None) else 0.5
        bits = rng.random((n, d)) < p
    bits[:, bc.fixed_idx] = bc.fixed_val
    return bits


def climb(plain: PlainBNN, bits: np.ndarray, bc: BitConstraints, target: int, steps: int,
          rng: np.random.Generator, leave: bool = False) -> np.ndarray:
    """Model-guided search: random single-bit flips kept when the margin does not drop (vectorised over rows).

    Args:
        bits: (N, D) starting inputs that satisfy ``bc``.
        target: the class to reach (or, with ``leave``, to leave).
        steps: flip rounds.

    Returns:
        (M, D) distinct inputs found whose class is ``target`` (or not ``target`` with ``leave``), all satisfying bc.
    """
    free = np.ones(plain.num_inputs, bool)
    free[bc.fixed_idx] = False
    free_idx = np.flatnonzero(free)
    if len(bits) == 0 or len(free_idx) == 0:
        return bits[:0]
    rows = np.arange(len(bits))

    def margin(b: np.ndarray) -> np.ndarray:
        s = plain.scores(b)
        if plain.num_outputs == 1:
            m = s[:, 0] if target == 1 else -s[:, 0]
        else:
            other = np.delete(s, target, axis=1).max(1)
            m = s[:, target] - other
        return -m if leave else m

    def hit(b: np.ndarray) -> np.ndarray:
        p = plain.predict(b)
        return p != target if leave else p == target

    bits = bits.copy()
    cur = margin(bits)
    done = hit(bits)  # a walker stops at its first hit: one input per walker keeps the results diverse
    for _ in range(steps):
        if done.all():
            break
        j = free_idx[rng.integers(0, len(free_idx), size=len(bits))]
        prop = bits.copy()
        prop[rows, j] ^= True
        m = margin(prop)
        acc = (m >= cur) & bc.check(prop) & ~done
        bits[acc], cur[acc] = prop[acc], m[acc]
        done |= acc & hit(bits)
    out = bits[done]
    return np.unique(out, axis=0) if len(out) else out


def _enumeration_ball(bc: BitConstraints, d: int) -> BitConstraints:
    """The constraints with an on-count bound alone written as the Hamming ball it is (at most k bits on: radius k
    around the all-zero input; at least k: radius d − k around the all-one input), so that enumeration walks only
    the inputs that can satisfy it. The same set of inputs; a given ball is kept."""
    if bc.center is not None or (bc.max_on is None and bc.min_on is None):
        return bc
    if bc.max_on is not None and (bc.min_on is None or bc.max_on <= d - bc.min_on):
        return dataclasses.replace(bc, center=np.zeros(d, bool), radius=int(bc.max_on))
    return dataclasses.replace(bc, center=np.ones(d, bool), radius=int(d - bc.min_on))


def space_size(bc: BitConstraints, d: int) -> int:
    """How many inputs the fixed pixels and the Hamming ball (or an on-count bound, as a ball) leave; within the
    ball, on-count bounds are not subtracted."""
    bc = _enumeration_ball(bc, d)
    free = np.ones(d, bool)
    free[bc.fixed_idx] = False
    f = int(free.sum())
    if bc.center is None:
        return 2**f
    r = bc.radius - int((bc.center[bc.fixed_idx] != bc.fixed_val).sum())  # fixed pixels already spend some radius
    return sum(math.comb(f, i) for i in range(min(r, f) + 1)) if r >= 0 else 0


def enumerate_classes(plain: PlainBNN, bc: BitConstraints, chunk: int = 1 << 15
                      ) -> Iterator[tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]]:
    """Classify every input satisfying ``bc`` (use when :func:`space_size` is small), in chunks.

    A Hamming ball is walked by increasing distance, with the first layer updated by differences
    (``z = z_centre - 2 sum_{flipped j} W_0[:, j] a_j``), so no input is materialised until asked for.

    Yields:
        ``(classes (M,), bits)`` where ``bits(rows)`` builds the inputs (len(rows), D) bool of chosen rows.
    """
    d = plain.num_inputs
    bc = _enumeration_ball(bc, d)
    free = np.ones(d, bool)
    free[bc.fixed_idx] = False
    free_idx = np.flatnonzero(free)
    base = np.zeros(d, bool) if bc.center is None else bc.center.copy()
    base[bc.fixed_idx] = bc.fixed_val
    if bc.center is None:
        n = 1 << len(free_idx)
        for start in range(0, n, chunk):
            idx = np.arange(start, min(start + chunk, n), dtype=np.int64)
            bits = np.repeat(base[None], len(idx), 0)
            bits[:, free_idx] = (idx[:, None] >> np.arange(len(free_idx))) & 1
            bits = bits[bc.check(bits)]
            yield plain.predict(bits), (lambda rows, b=bits: b[rows])
        return
    r = bc.radius - int((bc.center[bc.fixed_idx] != bc.fixed_val).sum())
    z0 = plain.preact1(base[None])[0]  # (H1,)
    a0 = base.astype(np.float64) * 2 - 1
    delta = -2.0 * plain.weights[0].T.astype(np.float64) * a0[:, None]  # (D, H1): change of z when bit j flips
    on0, step = int(base.sum()), np.where(base, -1, 1)  # on-count change per flipped bit
    for flips in _flip_sets(free_idx, r, chunk):  # (M, i) pixels to flip, by increasing distance i
        on = on0 + step[flips].sum(1)
        keep = np.ones(len(flips), bool)
        if bc.min_on is not None:
            keep &= on >= bc.min_on
        if bc.max_on is not None:
            keep &= on <= bc.max_on
        flips = flips[keep]
        z = z0 + delta[flips].sum(1)  # (M, H1)

        def bits(rows: np.ndarray, f: np.ndarray = flips) -> np.ndarray:
            out = np.repeat(base[None], len(rows), 0)
            out[np.arange(len(rows))[:, None], f[rows]] ^= True
            return out

        yield plain.classes(plain.scores_from_preact1(z)), bits


def _flip_sets(free_idx: np.ndarray, r: int, chunk: int) -> Iterator[np.ndarray]:
    if r < 0:
        return
    yield np.zeros((1, 0), np.int64)  # the centre itself
    for i in range(1, min(r, len(free_idx)) + 1):
        combos = itertools.combinations(free_idx.tolist(), i)
        while len(flips := np.array(list(itertools.islice(combos, chunk)), dtype=np.int64).reshape(-1, i)):
            yield flips
