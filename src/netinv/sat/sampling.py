"""Sampling distinct preimages of a class (``sample``), checkpointed and resumable, and the pairwise Hamming
distances that say how diverse they are. The shared query plumbing (setup, cheap candidates, checks against the
PyTorch model) is in :mod:`netinv.sat.queries`."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import ConfigError, SolverError
from .._utils.checkpoint import finished_run, read_json_object, resume_state, save_state
from .._utils.progress import progress_bar
from .._utils.runinfo import config_dict
from ..data.npz import read_arrays
from ._solver import LimitedSolver, run_forked
from .constraints import BitConstraints, InputConstraints, constraint_clauses, resolve
from .encode import BNNFormula, PlainBNN
from .queries import Model, QueryConfig, _bits_from_model, _cheap, _classes, _cnf_digest, _setup, _verify
from .results import SampleResult, Status, write_outputs

HAMMING_MATRIX_MAX = 2000  # samples up to which a sample result keeps the K×K matrix (16 MB); its summary always


def _hamming_blocks(bits: np.ndarray, chunk: int):  # noqa: ANN202
    """(first row, block of distances from those rows to every row): |a| + |b| − 2·a·b by float32 products (exact for
    D < 2²⁴), ``chunk`` rows at a time, so memory is one block, not a K×K×D comparison."""
    b = bits.astype(np.float32)
    pop = b.sum(1)
    for i in range(0, len(b), chunk):  # chunks of rows, not a loop over samples
        yield i, np.rint(pop[i:i + chunk, None] + pop[None] - 2 * (b[i:i + chunk] @ b.T))


def hamming_summary(bits: np.ndarray) -> dict[str, float | int | None]:
    """Min, mean and max Hamming distance over all pairs of rows of a K×D bool array, in blocks of at most 2**24
    distances (memory does not grow with K²).

    Example:
        >>> hamming_summary(np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], bool))
        {'min': 1, 'mean': 2.0, 'max': 3}
    """
    k = len(bits)
    if k < 2:
        return {"min": None, "mean": None, "max": None}
    lo, hi, total = np.inf, -np.inf, 0.0
    for i, d in _hamming_blocks(bits, max(1, (1 << 24) // k)):
        v = d[np.arange(k)[None] > np.arange(i, i + len(d))[:, None]]  # each pair once
        if len(v):
            lo, hi, total = min(lo, float(v.min())), max(hi, float(v.max())), total + float(v.sum())
    return {"min": int(lo), "mean": total / (k * (k - 1) / 2), "max": int(hi)}


def pairwise_hamming(bits: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """K×K int32 Hamming distances between the rows of a K×D bool array (the result alone in memory).

    Example:
        >>> pairwise_hamming(np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], bool)).tolist()
        [[0, 1, 2], [1, 0, 3], [2, 3, 0]]
    """
    out = np.empty((len(bits), len(bits)), np.int32)
    for i, d in _hamming_blocks(bits, chunk):
        out[i:i + len(d)] = d
    return out


SAMPLE_STATE = ".sample_state.pt"
#: a running sample saves its preimages at most this often, and always when it stops (n reached, UNSAT, the time
#: limit, Ctrl-C), so a kill without warning (SIGKILL) loses at most a second of search. Measured on the loaded 2-core
#: machine: a state of 10 000 preimages of 784 bits saves in 9 ms (of 100: under 2 ms); 1 500 solver preimages of a
#: 64-32-10 net took 35.4 s without --out, 36.0 s saving once a second and 38.1 s saving after every preimage
SAVE_EVERY_S = 1.0


def _sample_settings(f: BNNFormula, bc: BitConstraints, c: int, n: int, method: str, config: QueryConfig,
                     constraints: InputConstraints | None) -> dict[str, Any]:
    """What a resumed sample must share with the interrupted one. ``cnf_sha256`` covers the model's CNF and the
    constraints' bits (not their clauses, whose auxiliary variables move each time a formula is reused); the time
    limit is not compared: it applies to each invocation."""
    h = hashlib.sha256(_cnf_digest(f.clauses).encode())
    for a in (bc.fixed_idx, bc.fixed_val, bc.center if bc.center is not None else np.zeros(0)):
        h.update(np.asarray(a, np.int64).tobytes() + b"|")
    h.update(repr((bc.radius, bc.min_on, bc.max_on)).encode())
    return {"class": c, "n": n, "method": method, "constraints": (constraints or InputConstraints()).summary(),
            "config": {k: v for k, v in config_dict(config).items() if k != "time_limit"}, "cnf_sha256": h.hexdigest()}


def _sample_view(record: dict[str, Any]) -> dict[str, Any]:
    """A sample's ``result.json`` as :func:`_sample_settings` (what a resume of a finished sample is checked by)."""
    cfg = record.get("config") if isinstance(record.get("config"), dict) else {}
    own = {"method", "n", "constraints", "cnf_sha256", "time_limit"}
    return {"class": record.get("class"), "n": cfg.get("n"), "method": cfg.get("method"),
            "constraints": cfg.get("constraints"), "config": {k: v for k, v in cfg.items() if k not in own},
            "cnf_sha256": cfg.get("cnf_sha256")}


def _finished_sample(out: str | Path, plain: PlainBNN, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The preimage bits and record of a finished sample (SAT or UNSAT, no state left) of these settings in ``out``
    (another query's is refused); None when there is none, or it stopped at its time limit and its state is gone."""
    if not finished_run(out, SAMPLE_STATE, "result.json", settings, record_file="result.json", view=_sample_view):
        return None
    out = Path(out)
    rec = read_json_object(out / "result.json")
    if rec.get("status") not in (Status.SAT.value, Status.UNSAT.value):
        return None
    x = read_arrays(out / "preimages.npz", what="preimages", keys=("x",))["x"] if rec.get("found") else None
    bits = plain.binarize(x) if x is not None else np.zeros((0, plain.num_inputs), bool)  # to_data's inverse
    if len(bits) != rec.get("found"):
        raise ConfigError(f"{out / 'preimages.npz'} holds {len(bits)} preimages, its result.json {rec.get('found')}",
                          "sample afresh without --resume, or use a new --out")
    methods, elapsed = rec.get("methods"), rec.get("time_s")
    if not isinstance(methods, dict) or not isinstance(elapsed, int | float):
        raise ConfigError(f"{out / 'result.json'} lacks the methods or time_s of the sample it records",
                          "sample afresh without --resume, or use a new --out")
    return {"bits": bits, "methods": methods, "status": rec["status"], "elapsed": elapsed,
            "resumed": rec.get("resumed", 0), "candidates_done": True}


def sample(model: Model, cls: int, n: int = 100, constraints: InputConstraints | None = None,
           config: QueryConfig = QueryConfig(), *, method: str = "auto", out: str | Path | None = None,
           show_progress: bool | None = None, resume: bool = False) -> SampleResult:
    """``n`` distinct preimages of ``cls`` with their pairwise Hamming distances.

    Args:
        method: ``auto`` (uniform random candidates checked by the model, then the solver with random phases and
            blocking clauses on the input variables), ``solver`` (only the latter) or ``unigen`` (pyunigen's
            near-uniform sampler over the input variables, in a child process).
        config: ``time_limit`` bounds the whole query (each invocation, when resumed); the samples found so far are
            returned on timeout.
        out: writes ``result.json`` and ``preimages.npz/.png``; while sampling (auto, solver) ``.sample_state.pt``
            holds the preimages found so far (saved at most every second and whenever the search stops: Ctrl-C, the
            time limit), removed once n are found or UNSAT is proved.
        resume: continue the sample an interrupted or timed-out call of the same query left in ``out``: its
            preimages are kept and blocked, and the search goes on to ``n``; a finished sample is returned without
            searching. The solver's learned clauses and random phases are not replayed, so the set need not be the
            one an uninterrupted run finds (the cheap candidates are: that phase is replayed from the seed); every
            preimage is still checked and distinct. Not for ``unigen``, which samples in one child-process call.

    Returns:
        :class:`SampleResult`; UNSAT means the solver enumerated every preimage and there are fewer than ``n``.
    """
    if method not in ("auto", "solver", "unigen"):
        raise ConfigError(f"unknown sampling method {method!r}", "use auto, solver or unigen")
    if n <= 0:
        raise ConfigError(f"n={n} is not positive", "ask for at least one sample")
    if resume and out is None:
        raise ConfigError("resume needs the output folder that holds the interrupted sample", "give --out DIR")
    if resume and method == "unigen":
        raise ConfigError("method unigen cannot resume: it samples in one child-process call, so an interrupted "
                          "call leaves no preimages to continue from", "run it again without --resume, or sample "
                          "with --method auto or solver")
    f, tm = _setup(model, config)
    plain, c = f.plain, _classes(cls, f.plain)[0]
    bc = resolve(constraints, plain)
    cons = constraint_clauses(bc, f)
    settings = _sample_settings(f, bc, c, n, method, config, constraints) if out is not None else {}
    st = _finished_sample(out, plain, settings) if resume else None
    finished = st is not None  # nothing left to search: its result is returned as it was
    if not finished:
        st = resume_state(out, SAMPLE_STATE, "result.json", settings, resume)  # an interrupted sample's state
        st = None if st is None else {**st, "bits": st["bits"].numpy().astype(bool)}
    state_path = Path(out) / SAMPLE_STATE if out is not None and method != "unigen" and not finished else None
    found: dict[bytes, np.ndarray] = {} if st is None else {b.tobytes(): b for b in st["bits"]}
    methods = {"candidates": 0, "solver": 0, "unigen": 0, **({} if st is None else st["methods"])}
    status = Status.UNKNOWN if st is None else Status(st["status"])
    resumed = len(found)
    elapsed = 0.0 if st is None else float(st["elapsed"])  # seconds the earlier invocations searched
    cands_done = method != "auto" or (st is not None and bool(st["candidates_done"]))
    # a resume past the candidates draws new random phases, not those of the preimages it has
    rng = np.random.default_rng([config.seed, resumed] if st is not None and cands_done and resumed else config.seed)
    t0 = last_save = time.perf_counter()
    left = lambda: config.time_limit - (time.perf_counter() - t0)  # noqa: E731

    def save() -> None:
        bits_ = np.stack(list(found.values())) if found else np.zeros((0, plain.num_inputs), bool)
        save_state(state_path, {"settings": settings, "bits": torch.from_numpy(bits_), "methods": methods,
                                "candidates_done": cands_done, "status": status.value,
                                "elapsed": elapsed + time.perf_counter() - t0})

    with progress_bar(n, f"sample class {c}", completed=len(found), show=show_progress) as bar:
        def add(bits: np.ndarray, how: str) -> None:
            for b in bits:
                if len(found) < n and b.tobytes() not in found:
                    found[b.tobytes()] = b
                    methods[how] += 1
                    bar.update(1, found=len(found))
        try:
            if not cands_done:  # replayed from the seed on a resume: its inputs are found again, in the same order
                seen: set[bytes] = set()
                for _ in range(64):  # rounds of cheap candidates while they keep paying off
                    hit = _cheap(plain, bc, c, config, rng)
                    new = {b.tobytes() for b in hit} - seen
                    seen |= new
                    add(hit, "candidates")
                    if len(found) >= n or not new or left() <= 0:
                        break
                cands_done = True
                if state_path is not None and len(found) < n:
                    save()
            if method == "unigen" and len(found) < n:
                ok, val = run_forked(_unigen_child, (f.clauses + cons + [[f.y_lits[c]]], f.x_vars, n, config.seed),
                                     left())
                if ok:
                    add(np.array([_bits_from_model(f, m) for m in val], dtype=bool).reshape(-1, plain.num_inputs),
                        "unigen")
                    status = Status.SAT if len(found) >= n else (Status.UNSAT if not val else Status.UNKNOWN)
            elif len(found) < n and status is not Status.UNSAT:  # (a finished sample: n found, or UNSAT)
                free = [f.x_vars[j] for j in plain.free]
                with LimitedSolver(f.clauses + cons, config.solver) as s:
                    for b in found.values():  # block what the candidates (and an interrupted run) already gave
                        s.add_clause([-v if b[j] else v for j, v in zip(plain.free, free, strict=True)])
                    while len(found) < n:
                        s.set_phases([v if r else -v for v, r in zip(free, rng.random(len(free)) < 0.5, strict=True)])
                        ok = s.solve([f.y_lits[c]], left())
                        if not ok:
                            status = Status.UNSAT if ok is False else Status.UNKNOWN
                            break
                        b = _bits_from_model(f, s.get_model())
                        add(b[None], "solver")
                        s.add_clause([-v if b[j] else v for j, v in zip(plain.free, free, strict=True)])
                        if state_path is not None and time.perf_counter() - last_save >= SAVE_EVERY_S:
                            save()
                            last_save = time.perf_counter()
            if len(found) >= n:
                status = Status.SAT
        finally:  # Ctrl-C between two saves, or the time limit: the preimages found so far are on disk
            if state_path is not None:
                save()
    bits = np.stack(list(found.values())) if found else np.zeros((0, plain.num_inputs), bool)
    if len(bits) and not ((plain.predict(bits) == c).all() and bc.check(bits).all()):
        raise SolverError(f"a sample is not class {c} under the integer model", "this is an encoding bug: report it")
    ham = pairwise_hamming(bits) if len(bits) <= HAMMING_MATRIX_MAX else np.zeros((0, 0), np.int32)
    dt = elapsed + (0.0 if finished else time.perf_counter() - t0)
    cons_rec = (constraints or InputConstraints()).summary()
    cfg = {**config_dict(config), "method": method, "n": n, "constraints": cons_rec,
           **({"cnf_sha256": settings["cnf_sha256"]} if settings else {})}  # what a resume is checked by
    res = SampleResult(c, status, plain.to_data(bits)[: len(bits)], bits, ham, dt, len(bits) / dt if dt else 0.0,
                       methods, _verify(tm, plain, bits, np.full(len(bits), c)), f.stats(), config.seed, cfg,
                       hamming_stats=hamming_summary(bits), resumed=int(st["resumed"]) if finished else resumed)
    if out is not None and not finished:
        write_outputs(res, out, model)
        if status is not Status.UNKNOWN or state_path is None:  # a timed-out sample keeps its state to resume
            (Path(out) / SAMPLE_STATE).unlink(missing_ok=True)
    return res


def _unigen_child(clauses: list, xs: list[int], n: int, seed: int, emit: Any) -> list[list[int]]:
    import pyunigen

    s = pyunigen.Sampler(seed=seed)
    for cl in clauses:
        s.add_clause(cl)
    return list(s.sample(num=n, sampling_set=xs)[2])
