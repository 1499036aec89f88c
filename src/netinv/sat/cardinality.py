"""Reified cardinality constraints ``o <-> (sum(lits) >= k)`` as CNF, several encodings behind one entry point.

Every encoding here is a circuit with full (both-direction) Tseitin clauses, so fixing the inputs decides ``o`` by
unit propagation (exact inference) and fixing ``o`` constrains the inputs (inversion). PySAT's ``CardEnc`` clauses
are one-directional and its native-cardinality solvers cannot reify a constraint (issue 5), hence our own.

References:
    [1] Bailleux & Boufkhad, "Efficient CNF encoding of Boolean cardinality constraints", CP 2003 (totalizer).
    [2] Sinz, "Towards an optimal CNF encoding of Boolean cardinality constraints", CP 2005 (sequential counter).
    [3] Batcher, "Sorting networks and their applications", 1968; Eén & Sörensson, "Translating pseudo-Boolean
        constraints into SAT", JSAT 2006 (odd-even merge sorting network).
    [4] Warners, "A linear-time transformation of linear inequalities into CNF", IPL 1998 (adder / parallel counter).
"""

from __future__ import annotations

from enum import StrEnum

from pysat.formula import IDPool

from .._errors import ConfigError

Clauses = list[list[int]]


class Encoding(StrEnum):
    """Cardinality encodings. Sizes for one neuron with n inputs and bound k (k near n/2 in a BNN)."""

    TOTALIZER = "totalizer"  # [1] O(n k) vars, O(n k) clauses (k-truncated), strongest propagation
    SEQCOUNTER = "seqcounter"  # [2] O(n k) vars and clauses
    SORTNET = "sortnet"  # [3] O(n log^2 n) comparators, cone-of-influence pruned
    ADDER = "adder"  # [4] O(n) full adders + a comparator: the compact one for wide layers
    AUTO = "auto"  # by width, see :func:`auto_encoding`


#: Widest fan-in for which AUTO uses the totalizer; wider layers get the adder (ours, measured in
#: benchmarks/sat_bnn.py: the totalizer is the fastest to solve on the 64-input digits BNN, while a 784-input
#: neuron costs ~0.5 M totalizer clauses against ~11 k for the adder).
TOTALIZER_MAX_WIDTH = 256


def auto_encoding(n: int) -> Encoding:
    """The default encoding for a constraint over ``n`` literals."""
    return Encoding.TOTALIZER if n <= TOTALIZER_MAX_WIDTH else Encoding.ADDER


def parse_encoding(name: str | Encoding) -> Encoding:
    """``"totalizer"`` -> Encoding.TOTALIZER; a one-line ConfigError for unknown names."""
    try:
        return Encoding(name)
    except ValueError:
        raise ConfigError(f"unknown encoding {name!r}", f"use one of: {', '.join(e.value for e in Encoding)}") \
            from None


def true_lit(vpool: IDPool, clauses: Clauses) -> int:
    """A literal fixed to true (unit clause added the first time)."""
    new = ("const", "true") not in vpool.obj2id
    t = vpool.id(("const", "true"))
    if new:
        clauses.append([t])
    return t


def cardinality(lits: list[int], bound: int, relation: str = ">=", *, vpool: IDPool,
                encoding: Encoding | str = Encoding.AUTO, name: object = None) -> tuple[int, Clauses]:
    """The one entry point: a literal ``o`` with ``o <-> (sum(lits) REL bound)`` and the clauses defining it.

    Args:
        lits: DIMACS literals (distinct variables).
        bound: the integer bound.
        relation: ``">="`` or ``"<="`` (``sum <= b`` is ``not (sum >= b + 1)``).
        vpool: names auxiliary variables (``("card", name, ...)``) so ids never collide.
        encoding: an :class:`Encoding` or its name; AUTO picks by ``len(lits)``.
        name: a hashable prefix for the auxiliary variable names (default: a fresh counter).

    Returns:
        ``(o, clauses)``; constant constraints return the shared true literal or its negation.

    Raises:
        ConfigError: unknown encoding or relation.
    """
    enc = parse_encoding(encoding)
    if relation not in (">=", "<="):
        raise ConfigError(f"unknown relation {relation!r}", "use '>=' or '<='")
    if relation == "<=":
        o, cls = cardinality(lits, bound + 1, ">=", vpool=vpool, encoding=enc, name=name)
        return -o, cls
    clauses: Clauses = []
    n = len(lits)
    if bound <= 0 or bound > n:
        t = true_lit(vpool, clauses)
        return (t if bound <= 0 else -t), clauses
    if n == 1:
        return lits[0], clauses
    if name is None:
        name = ("anon", vpool.top + 1)
    if enc is Encoding.AUTO:
        enc = auto_encoding(n)
    neg = False
    if enc in (Encoding.TOTALIZER, Encoding.SEQCOUNTER) and bound > n - bound + 1:
        # sum(l) >= k  <->  not (sum(not l) >= n - k + 1): count to the smaller bound
        lits, bound, neg = [-v for v in lits], n - bound + 1, True
    new = lambda *key: vpool.id(("card", name, *key))  # noqa: E731
    if enc is Encoding.TOTALIZER:
        o = _totalizer(lits, bound, new, clauses)
    elif enc is Encoding.SEQCOUNTER:
        o = _seqcounter(lits, bound, new, clauses)
    elif enc is Encoding.SORTNET:
        o = _sortnet(lits, bound, new, clauses)
    else:
        o = _adder(lits, bound, new, clauses, vpool)
    return (-o if neg else o), clauses


def _totalizer(lits: list[int], k: int, new, clauses: Clauses) -> int:
    """Bidirectional totalizer [1] truncated at k: node output r_i <-> (count in subtree >= i), i <= k."""
    nodes, nid = [[v] for v in lits], 0
    while len(nodes) > 1:
        nxt = []
        for p in range(0, len(nodes) - 1, 2):
            a, b = nodes[p], nodes[p + 1]
            m = min(len(a) + len(b), k)
            r = [new("tot", nid, i) for i in range(m)]  # r[i] <-> count >= i + 1
            nid += 1
            for i in range(len(a) + 1):
                for j in range(len(b) + 1):
                    s = i + j
                    if 1 <= s <= m:  # a >= i and b >= j -> r >= s
                        clauses.append([x for x in (-a[i - 1] if i else 0, -b[j - 1] if j else 0, r[s - 1]) if x])
                    if s + 1 <= m:  # a < i+1 and b < j+1 -> r < s+1
                        c = [-r[s]]
                        if i < len(a):
                            c.append(a[i])
                        if j < len(b):
                            c.append(b[j])
                        clauses.append(c)
            nxt.append(r)
        if len(nodes) % 2:
            nxt.append(nodes[-1])
        nodes = nxt
    return nodes[0][k - 1]


def _seqcounter(lits: list[int], k: int, new, clauses: Clauses) -> int:
    """Bidirectional sequential counter [2]: s[i][j] <-> (at least j of the first i literals), j <= k."""
    prev: list[int | None] = [None] * k  # s[i-1][j], None = false (j > i-1)
    for i, x in enumerate(lits, start=1):
        cur: list[int | None] = [None] * k
        for j in range(1, min(i, k) + 1):
            s = new("seq", i, j)
            cur[j - 1] = s
            p, q = prev[j - 1], (prev[j - 2] if j >= 2 else True)  # s[i-1][j], s[i-1][j-1]
            # s <-> p or (x and q)
            if p is not None:
                clauses.append([-p, s])
            if q is True:
                clauses.append([-x, s])
                clauses.append([-s, x] + ([p] if p is not None else []))
            elif q is not None:
                clauses.append([-x, -q, s])
                clauses.append([-s, x] + ([p] if p is not None else []))
                clauses.append([-s, q] + ([p] if p is not None else []))
            else:  # q false: s <-> p
                clauses.append([-s] + ([p] if p is not None else []))
        prev = cur
    return prev[k - 1]  # type: ignore[return-value]


def _sortnet(lits: list[int], k: int, new, clauses: Clauses) -> int:
    """Odd-even merge sort [3] (descending), padded with false; keeps only comparators feeding output k-1."""
    size = 1 << (len(lits) - 1).bit_length()
    comps: list[tuple[int, int]] = []

    def merge(lo: int, n: int, r: int) -> None:
        step = r * 2
        if step < n:
            merge(lo, n, step)
            merge(lo + r, n, step)
            comps.extend((i, i + r) for i in range(lo + r, lo + n - r, step))
        else:
            comps.append((lo, lo + r))

    def sort(lo: int, n: int) -> None:
        if n > 1:
            sort(lo, n // 2)
            sort(lo + n // 2, n // 2)
            merge(lo, n, 1)

    sort(0, size)
    need, keep = {k - 1}, []  # cone of influence of the output wire, walked backwards
    for i, j in reversed(comps):
        if i in need or j in need:
            keep.append((i, j, i in need, j in need))
            need |= {i, j}
    wire: list[int | bool] = [*lits, *([False] * (size - len(lits)))]
    for c, (i, j, want_hi, want_lo) in enumerate(reversed(keep)):
        a, b = wire[i], wire[j]
        if a is False or b is False:  # max(a, F) = a, min(a, F) = F
            wire[i], wire[j] = (b if a is False else a), False
            continue
        hi, lo = (new("srt", c, 0) if want_hi else 0), (new("srt", c, 1) if want_lo else 0)
        if want_hi:  # hi <-> a or b
            clauses += [[-a, hi], [-b, hi], [-hi, a, b]]
        if want_lo:  # lo <-> a and b
            clauses += [[-lo, a], [-lo, b], [-a, -b, lo]]
        wire[i], wire[j] = hi, lo
    return wire[k - 1]  # type: ignore[return-value]


def _adder(lits: list[int], k: int, new, clauses: Clauses, vpool: IDPool) -> int:
    """Parallel counter [4]: full/half adders reduce the literals to a binary count, then ``count >= k``."""
    cols: list[list[int]] = [list(lits)]  # cols[w]: bits of weight 2**w still to be added
    g = 0
    w = 0
    while w < len(cols):
        col = cols[w]
        while len(col) >= 2:
            if len(col) >= 3:
                x, y, z = col.pop(0), col.pop(0), col.pop(0)
                s, c = new("add", g, 0), new("add", g, 1)
                # s <-> x xor y xor z (8 clauses); c <-> majority(x, y, z) (6 clauses)
                for sx in (1, -1):
                    for sy in (1, -1):
                        for sz in (1, -1):
                            odd = (sx > 0) ^ (sy > 0) ^ (sz > 0)
                            clauses.append([-sx * x, -sy * y, -sz * z, s if odd else -s])
                clauses += [[-x, -y, c], [-x, -z, c], [-y, -z, c], [x, y, -c], [x, z, -c], [y, z, -c]]
            else:
                x, y = col.pop(0), col.pop(0)
                s, c = new("add", g, 0), new("add", g, 1)
                clauses += [[-x, -y, -s], [x, y, -s], [x, -y, s], [-x, y, s]]  # s <-> x xor y
                clauses += [[-c, x], [-c, y], [-x, -y, c]]  # c <-> x and y
            g += 1
            col.append(s)
            if w + 1 == len(cols):
                cols.append([])
            cols[w + 1].append(c)
        w += 1
    bits = [col[0] if col else None for col in cols]  # count = sum bits[w] 2**w
    # ge_w <-> (count restricted to bits >= w) >= (k restricted to bits >= w), from the top bit down
    ge: int | bool = True
    for w in range(len(bits)):
        kb, b = (k >> w) & 1, bits[w]
        if b is None:  # a zero bit: ge_w = ge_{w-1} if kb = 0 else false
            ge = ge if kb == 0 else False
            continue
        if ge is True:
            ge = b if kb else True
        elif ge is False:
            ge = b if kb == 0 else False
        else:
            o = new("cmp", w)
            if kb:  # o <-> b and ge
                clauses += [[-o, b], [-o, ge], [-b, -ge, o]]
            else:  # o <-> b or ge
                clauses += [[-b, o], [-ge, o], [-o, b, ge]]
            ge = o
    if k >> len(bits):  # k exceeds the counter's range (cannot happen for k <= n, kept for safety)
        ge = False
    if isinstance(ge, bool):
        t = true_lit(vpool, clauses)
        return t if ge else -t
    return ge
