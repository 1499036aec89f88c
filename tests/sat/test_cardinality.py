"""Every encoding is exact and decides its output by unit propagation (exhaustive over small n, every bound)."""

from __future__ import annotations

import itertools

import pytest
from pysat.formula import IDPool
from pysat.solvers import Solver

from netinv._errors import ConfigError
from netinv.sat.cardinality import Encoding, auto_encoding, cardinality

ENCODINGS = [Encoding.TOTALIZER, Encoding.SEQCOUNTER, Encoding.SORTNET, Encoding.ADDER]


@pytest.mark.parametrize("enc", ENCODINGS)
@pytest.mark.parametrize("rel", [">=", "<="])
def test_reified_cardinality_is_exact_and_propagates(enc, rel):
    for n in range(1, 7):
        for k in range(-1, n + 2):
            vp = IDPool()
            xs = [vp.id(("x", i)) for i in range(n)]
            lits = [x if i % 3 else -x for i, x in enumerate(xs)]  # mixed polarities
            o, cl = cardinality(lits, k, rel, vpool=vp, encoding=enc, name="t")
            with Solver(name="g42", bootstrap_with=cl) as s:
                for bits in itertools.product([False, True], repeat=n):
                    ass = [x if b else -x for x, b in zip(xs, bits, strict=True)]
                    cnt = sum(b == (lit > 0) for b, lit in zip(bits, lits, strict=True))
                    truth = cnt >= k if rel == ">=" else cnt <= k
                    want = o if truth else -o
                    assert not s.solve(assumptions=ass + [-want]), (enc, rel, n, k, bits)
                    ok, implied = s.propagate(assumptions=ass)
                    assert ok and (want in implied or want in ass or s.solve(assumptions=[-want]) is False)


def test_auto_and_errors():
    assert auto_encoding(64) is Encoding.TOTALIZER and auto_encoding(784) is Encoding.ADDER
    with pytest.raises(ConfigError, match="unknown encoding"):
        cardinality([1, 2], 1, vpool=IDPool(), encoding="nope")
    with pytest.raises(ConfigError, match="relation"):
        cardinality([1, 2], 1, "==", vpool=IDPool())


def test_wide_neuron_sizes_order():
    """For one 784-input neuron near balance the adder is far smaller than the totalizer (issue 5's sizes)."""
    sizes = {}
    for enc in (Encoding.TOTALIZER, Encoding.ADDER):
        vp = IDPool()
        _, cl = cardinality([vp.id(i) for i in range(784)], 392, vpool=vp, encoding=enc)
        sizes[enc] = len(cl)
    assert sizes[Encoding.ADDER] < 20_000 < 300_000 < sizes[Encoding.TOTALIZER]
