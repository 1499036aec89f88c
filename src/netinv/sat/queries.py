"""SAT queries on a BNN: infer, invert, count, robust (Suhail, Chakraborty & Sethi 2024, arXiv 2402.11995); sample
is in :mod:`netinv.sat.sampling`.

Every query first tries cheap inputs checked by the exact integer model (uniform random inputs under the
constraints, then model-guided bit-flip climbing), and keeps the solver for what sampling cannot answer
(constrained regions, UNSAT proofs, robustness) — issue 5 measured ~10% of random inputs per class on a 784-input
BNN that no encoding solved in 600 s. Every found input is re-checked by the PyTorch model when one is given.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import ConfigError, SolverError
from .._utils.checkpoint import check_resume, load_state, save_state
from .._utils.progress import progress_bar
from .._utils.runinfo import config_dict
from ..models.loaded import LoadedModel, predicted_class
from ._solver import DEFAULT_SOLVER, LimitedSolver, check_solver, run_forked
from .cardinality import parse_encoding
from .constraints import (
    BitConstraints,
    InputConstraints,
    climb,
    constraint_clauses,
    enumerate_classes,
    random_candidates,
    resolve,
    space_size,
)
from .encode import BNNFormula, PlainBNN, encode
from .results import (
    ClassCount,
    ClassOutcome,
    CountResult,
    InferResult,
    InvertResult,
    RobustResult,
    Status,
    write_outputs,
)

Model = LoadedModel | torch.nn.Module | PlainBNN | BNNFormula | str | Path


@dataclass(frozen=True)
class QueryConfig:
    """Settings shared by the queries."""

    encoding: str = "auto"  # ours: totalizer up to 256 inputs, adder above (benchmarks/sat_bnn.py)
    solver: str = DEFAULT_SOLVER  # ours: Glucose 4.2, interruptible in-process (benchmarks/sat_bnn.py)
    time_limit: float = 60.0  # seconds per class (invert, count), per query (sample, robust), per input (infer)
    candidates: int = 1024  # cheap random inputs checked by the model before the solver (issue 5); 0: solver only
    climb_steps: int = 100  # model-guided bit-flip rounds on those candidates (ours)
    enumerate_max: int = 1_000_000  # invert/robust: constrained spaces this small are enumerated, not solved (ours)
    seed: int = 0


def load_bnn(path: str | Path, **load_options: Any) -> PlainBNN | LoadedModel:
    """A binarised net from a path, as every query and the CLI take it: a plain integer BNN ``.npz``, or anything
    :func:`netinv.load_model` reads (a netinv BNN checkpoint) with ``load_options`` (a plain file takes none: its
    shape, threshold and mean are in the file)."""
    if str(path).endswith(".npz"):
        given = [k for k, v in load_options.items() if v is not None and k != "device"]
        if given:
            raise ConfigError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to a plain BNN "
                              f"file {path}", "put input_shape/threshold in its meta and mean/x_lo/x_hi in its arrays "
                              "(docs/sat.md)")
        return PlainBNN.load(path)
    from ..models.loading import load_model

    return load_model(path, **{"device": "cpu", **load_options})


def _setup(model: Model, config: QueryConfig) -> tuple[BNNFormula, Any]:
    """The formula and, when one was given, the PyTorch model used to verify found inputs."""
    if not (math.isfinite(config.time_limit) and config.time_limit > 0):
        raise ConfigError(f"time_limit={config.time_limit} is not a positive number of seconds",
                          "give a time limit in seconds > 0 (e.g. 60)")
    check_solver(config.solver)
    parse_encoding(config.encoding)
    if isinstance(model, str | Path):
        model = load_bnn(model)
    f = model if isinstance(model, BNNFormula) else encode(model, config.encoding)
    torch_model = None if isinstance(model, PlainBNN | BNNFormula) else model
    return f, torch_model


def _torch_predict(torch_model: Any, plain: PlainBNN, bits: np.ndarray, x: Any = None) -> np.ndarray | None:
    """Classes by the PyTorch model of ``bits`` written to data space (or of the data-space inputs ``x``)."""
    if torch_model is None or len(bits) == 0:
        return None
    x = torch.from_numpy(plain.to_data(bits)) if x is None else \
        torch.as_tensor(np.asarray(x), dtype=torch.float32).reshape(-1, *plain.input_shape)
    if isinstance(torch_model, LoadedModel):
        return torch_model.predict(x).numpy()
    was = torch_model.training
    torch_model.eval()
    with torch.no_grad():
        z = torch_model(x.to(next(torch_model.parameters()).device)).cpu()
    torch_model.train(was)
    return predicted_class(z).numpy()


def _verify(torch_model: Any, plain: PlainBNN, bits: np.ndarray, want: np.ndarray, leave: bool = False) -> bool | None:
    p = _torch_predict(torch_model, plain, bits)
    if p is None:
        return None
    return bool(np.all(p != want) if leave else np.all(p == want))


def _bits_from_model(f: BNNFormula, model: list[int]) -> np.ndarray:
    pos = np.zeros(f.num_vars + 1, bool)
    m = np.asarray(model)
    pos[m[(m > 0) & (m <= f.num_vars)]] = True
    return pos[np.asarray(f.x_vars)]


def _classes(classes: int | list[int] | None, plain: PlainBNN) -> list[int]:
    cs = list(range(plain.num_classes)) if classes is None else ([classes] if isinstance(classes, int) else classes)
    bad = [c for c in cs if not 0 <= int(c) < plain.num_classes]
    if bad or not cs:
        raise ConfigError(f"class(es) {bad or cs} outside 0..{plain.num_classes - 1}", "give valid class indices")
    return [int(c) for c in cs]


def _cheap(plain: PlainBNN, bc: BitConstraints, cls: int, config: QueryConfig, rng: np.random.Generator,
           leave: bool = False) -> np.ndarray:
    """Distinct model-checked inputs (M, D) reaching (or, with ``leave``, leaving) ``cls``, from random + climbing."""
    if config.candidates <= 0:
        return np.zeros((0, plain.num_inputs), bool)
    cand = random_candidates(bc, plain.num_inputs, config.candidates, rng)
    cand = cand[bc.check(cand)]
    p = plain.predict(cand) if len(cand) else np.zeros(0, int)
    hit = cand[(p != cls) if leave else (p == cls)]
    if len(hit) == 0 and config.climb_steps > 0:
        hit = climb(plain, cand[: max(1, config.candidates // 4)], bc, cls, config.climb_steps, rng, leave)
    return np.unique(hit, axis=0) if len(hit) else hit


def infer(model: Model, x: Any, config: QueryConfig = QueryConfig(), *, out: str | Path | None = None) -> InferResult:
    """Classify inputs through the CNF (inputs fixed by assumptions) and compare with the PyTorch model.

    Args:
        model: a netinv BNN (LoadedModel or module), a PlainBNN or an encoded BNNFormula.
        x: data-space inputs, N×input_shape (or one input).
        config: see :class:`QueryConfig` (``time_limit`` is per input).
        out: directory for result.json.

    Returns:
        :class:`InferResult`; ``agree`` is the exactness check (any mismatch is a bug).

    Raises:
        ConfigError: bad input shape or settings. ModelError: not a BNN.
    """
    f, tm = _setup(model, config)
    bits = f.plain.binarize(x)
    ref = _torch_predict(tm, f.plain, bits, x)  # the PyTorch model on the given inputs themselves
    ref = f.plain.predict(bits) if ref is None else ref
    sat, times = np.full(len(bits), -1, np.int64), np.zeros(len(bits))
    with LimitedSolver(f.clauses, config.solver) as s, progress_bar(len(bits), "infer", show=None) as bar:
        for i, b in enumerate(bits):
            t0 = time.perf_counter()
            ok = s.solve([v if bi else -v for v, bi in zip(f.x_vars, b.tolist(), strict=True)], config.time_limit)
            times[i] = time.perf_counter() - t0
            if ok is False:
                raise SolverError("the CNF has no model for a fixed input", "this is a bug: report the model")
            if ok:
                model_set = set(s.get_model())
                sat[i] = next(c for c, y in enumerate(f.y_lits) if y in model_set)
            bar.update(1)
    done = sat >= 0
    res = InferResult(sat, np.asarray(ref), bool((sat[done] == ref[done]).all()), times, f.stats(), config.seed,
                      config_dict(config))
    if out is not None:
        write_outputs(res, out, model)
    return res


def _enumerate(plain: PlainBNN, bc: BitConstraints, deadline: float) -> dict[int, np.ndarray] | None:
    """One input (D,) per class present in a small constrained space (every input classified); None at deadline."""
    seen: dict[int, np.ndarray] = {}
    for cls_, bits_of in enumerate_classes(plain, bc):
        if time.perf_counter() > deadline:
            return None
        for c in np.unique(cls_).tolist():
            if c not in seen:
                seen[c] = bits_of(np.flatnonzero(cls_ == c)[:1])[0]
    return seen


def invert(model: Model, classes: int | list[int] | None = None, constraints: InputConstraints | None = None,
           config: QueryConfig = QueryConfig(), *, out: str | Path | None = None,
           show_progress: bool | None = None) -> InvertResult:
    """One preimage per class, or a proof that the class is unreachable (under ``constraints``).

    Args:
        model: a netinv BNN, PlainBNN or BNNFormula.
        classes: class index or list (default: every class).
        constraints: fixed pixels / Hamming ball / on-count bounds (:class:`InputConstraints`).
        config: see :class:`QueryConfig` (``time_limit`` per class).
        out: directory for result.json, preimages.npz and preimages.png.

    Returns:
        :class:`InvertResult` with SAT / UNSAT / UNKNOWN per class and the preimages in data space.
    """
    f, tm = _setup(model, config)
    plain, cs = f.plain, _classes(classes, f.plain)
    bc = resolve(constraints, plain)
    rng = np.random.default_rng(config.seed)
    outcomes: list[ClassOutcome] = []
    small = space_size(bc, plain.num_inputs) <= config.enumerate_max
    seen: dict[int, np.ndarray] | None = None  # class -> an input, once the small space has been enumerated
    s: LimitedSolver | None = None  # built on first need: candidates often answer every class
    with progress_bar(len(cs), "invert", show=show_progress) as bar:
        for c in cs:
            t0 = time.perf_counter()
            hit = _cheap(plain, bc, c, config, rng)
            if len(hit):
                outcomes.append(ClassOutcome(c, Status.SAT, time.perf_counter() - t0, "candidates", hit[0]))
            elif small:  # few inputs left: checking all of them through the exact model decides every class
                seen = _enumerate(plain, bc, t0 + config.time_limit) if seen is None else seen
                st = Status.UNKNOWN if seen is None else (Status.SAT if c in seen else Status.UNSAT)
                outcomes.append(ClassOutcome(c, st, time.perf_counter() - t0, "enumeration",
                                             None if seen is None else seen.get(c)))
                small = seen is not None
            else:
                s = s or LimitedSolver(f.clauses + constraint_clauses(bc, f), config.solver)
                ok = s.solve([f.y_lits[c]], config.time_limit - (time.perf_counter() - t0))
                bits = _bits_from_model(f, s.get_model()) if ok else None
                if bits is not None and (plain.predict(bits)[0] != c or not bc.check(bits[None])[0]):
                    raise SolverError(f"solver preimage of class {c} is not class {c} under the integer model",
                                      "this is an encoding bug: report the model")
                st = Status.SAT if ok else (Status.UNSAT if ok is False else Status.UNKNOWN)
                outcomes.append(ClassOutcome(c, st, time.perf_counter() - t0, "solver", bits))
            bar.update(1, cls=c, status=outcomes[-1].status.value)
    if s is not None:
        s.close()
    found = [o for o in outcomes if o.bits is not None]
    bits = np.stack([o.bits for o in found]) if found else np.zeros((0, plain.num_inputs), bool)
    y = np.array([o.cls for o in found], dtype=np.int64)
    cfg = {**config_dict(config), "constraints": (constraints or InputConstraints()).summary()}
    res = InvertResult(outcomes, f.stats(), plain.to_data(bits), y, _verify(tm, plain, bits, y), config.seed, cfg)
    if out is not None:
        write_outputs(res, out, model)
    return res


def _count_child(clauses: list, xs: list[int], eps: float, delta: float, seed: int, emit: Any) -> tuple[int, int]:
    import pyapproxmc

    c = pyapproxmc.Counter(seed=seed, epsilon=eps, delta=delta)
    c.add_clauses(clauses)
    return c.count(projection=xs)


def count(model: Model, classes: int | list[int] | None = None, constraints: InputConstraints | None = None,
          config: QueryConfig = QueryConfig(), *, epsilon: float = 0.8, delta: float = 0.2, method: str = "approxmc",
          out: str | Path | None = None, show_progress: bool | None = None, resume: bool = False) -> CountResult:
    """Number of preimages per class and the share of the input space each class owns.

    Args:
        epsilon, delta: ApproxMC's guarantee, P[count/(1+eps) <= estimate <= count(1+eps)] >= 1 - delta
            (defaults: ApproxMC's own, Chakraborty, Meel & Vardi 2016).
        method: ``approxmc`` (projected on the input variables, in a child process killed at the time limit) or
            ``exact`` (enumerate every input under the constraints through the integer model; at most 2**24).
        out: writes ``result.json`` (and, while ApproxMC counts class by class, ``.count_state.pt`` with the classes
            counted so far).
        resume: reuse the classes an interrupted count of the same formula and settings finished (ApproxMC is
            seeded, so the result is the uninterrupted one).

    Returns:
        :class:`CountResult`; the fraction is count / space, the number of inputs the constraints leave (2**free_bits
        without constraints; free_bits = non-constant input pixels). With a Hamming ball and on-count bounds
        together, ApproxMC's space is the ball's size (an upper bound).
    """
    if method not in ("approxmc", "exact"):
        raise ConfigError(f"unknown counting method {method!r}", "use approxmc or exact")
    if not (0 < epsilon and 0 < delta < 1):
        raise ConfigError(f"epsilon={epsilon}, delta={delta} out of range", "use epsilon > 0 and 0 < delta < 1")
    if resume and out is None:
        raise ConfigError("resume needs the output folder that holds the interrupted count", "give --out DIR")
    f, _ = _setup(model, config)
    plain, cs = f.plain, _classes(classes, f.plain)
    bc = resolve(constraints, plain)
    free = plain.free
    space = space_size(bc, plain.num_inputs)  # the inputs the constraints leave (exact counting counts them)
    if method == "exact" and space > 2**24:
        raise ConfigError(f"exact counting over {space} inputs is too large",
                          "use --method approxmc (method='approxmc'), or constrain the input to at most 2**24 "
                          "inputs (e.g. a smaller --radius)")
    cons = constraint_clauses(bc, f)
    counts: list[ClassCount] = []
    with progress_bar(len(cs), "count", show=show_progress) as bar:
        if method == "exact":
            t0 = time.perf_counter()
            tot = np.zeros(plain.num_classes, np.int64)
            for classes_, _ in enumerate_classes(plain, bc):  # every input under the constraints
                if time.perf_counter() - t0 > config.time_limit:
                    tot = None
                    break
                tot += np.bincount(classes_, minlength=plain.num_classes)
            dt = time.perf_counter() - t0
            space = int(tot.sum()) if tot is not None else space  # on-count bounds inside a ball: exact here
            for c in cs:
                v = None if tot is None else int(tot[c])
                st = Status.UNKNOWN if v is None else (Status.SAT if v else Status.UNSAT)
                counts.append(_class_count(c, st, v, space, dt))
                bar.update(1)
        else:
            state_path = Path(out) / ".count_state.pt" if out is not None else None
            settings = {"epsilon": epsilon, "delta": delta, "config": config_dict(config), "space": space,
                        "cnf_sha256": _cnf_digest(f.clauses + cons)} if state_path is not None else {}
            done: dict[int, tuple[str, int | None, float]] = {}  # class -> (status, count, seconds)
            if resume and state_path is not None and state_path.exists():
                st_ = load_state(state_path)
                check_resume(st_, settings, state_path)
                done = {int(c): (s, v, t) for c, (s, v, t) in st_["done"].items()}
            for c in cs:
                if c in done and done[c][0] != Status.UNKNOWN.value:  # counted before the interrupt
                    s, v, dt = done[c]
                    counts.append(_class_count(c, Status(s), v, space, dt))
                    bar.update(1, cls=c)
                    continue
                t0 = time.perf_counter()
                ok, val = run_forked(_count_child, (f.clauses + cons + [[f.y_lits[c]]], f.x_vars, epsilon, delta,
                                                    config.seed), config.time_limit)
                v = None if not ok else int(val[0]) * 2 ** int(val[1])
                st = Status.UNKNOWN if v is None else (Status.SAT if v else Status.UNSAT)
                counts.append(_class_count(c, st, v, space, time.perf_counter() - t0))
                done[c] = (st.value, v, counts[-1].time_s)
                if state_path is not None:
                    save_state(state_path, {"settings": settings, "done": done})
                bar.update(1, cls=c)
    res = CountResult(counts, method, epsilon if method == "approxmc" else None,
                      delta if method == "approxmc" else None, int(len(free)), f.stats(), config.seed,
                      {**config_dict(config), "constraints": (constraints or InputConstraints()).summary()}, space)
    if out is not None:
        write_outputs(res, out, model)
        (Path(out) / ".count_state.pt").unlink(missing_ok=True)
    return res


def _cnf_digest(clauses: list[list[int]]) -> str:
    """SHA-256 of a clause list (a resumed count must count the same formula)."""
    h = hashlib.sha256()
    for cl in clauses:
        h.update(np.asarray(cl, np.int64).tobytes() + b"|")
    return h.hexdigest()


def _class_count(c: int, st: Status, v: int | None, space: int, dt: float) -> ClassCount:
    if v is None:
        return ClassCount(c, st, None, None, None, dt)
    return ClassCount(c, st, float(v), math.log2(v) if v else None, v / space if space else None, dt)


def robust(model: Model, x: Any, radius: int, config: QueryConfig = QueryConfig(), *,
           out: str | Path | None = None) -> RobustResult:
    """Is every input within Hamming distance ``radius`` of ``x``'s bits classified like ``x``?

    Returns:
        :class:`RobustResult`: a counterexample (SAT, checked by the model), a proof (UNSAT) or UNKNOWN.
    """
    if int(radius) < 0:
        raise ConfigError(f"radius {radius} is negative", "give a radius >= 0")
    f, tm = _setup(model, config)
    plain = f.plain
    b0 = plain.binarize(x)
    if b0.shape[0] != 1:
        raise ConfigError(f"robust takes one input, got {b0.shape[0]}", "give a single input")
    c = int(plain.predict(b0)[0])
    bc = resolve(InputConstraints(center=x, radius=int(radius)), plain)
    rng = np.random.default_rng(config.seed)
    t0 = time.perf_counter()
    hit, how = _cheap(plain, bc, c, config, rng, leave=True), "candidates"
    if len(hit):
        hit = hit[np.argsort((hit != b0).sum(1), kind="stable")[:1]]  # the closest one found
        st = Status.SAT
    elif space_size(bc, plain.num_inputs) <= config.enumerate_max:  # a small ball: checking every point is a proof
        how, hit, st = "enumeration", np.zeros((0, plain.num_inputs), bool), Status.UNSAT
        for cls_, bits_of in enumerate_classes(plain, bc):  # by increasing distance: the first hit is closest
            if time.perf_counter() - t0 > config.time_limit:
                st = Status.UNKNOWN
                break
            bad = np.flatnonzero(cls_ != c)
            if len(bad):
                hit, st = bits_of(bad[:1]), Status.SAT
                break
    else:
        how = "solver"
        with LimitedSolver(f.clauses + constraint_clauses(bc, f), config.solver) as s:
            ok = s.solve([-f.y_lits[c]], config.time_limit - (time.perf_counter() - t0))
            st = Status.SAT if ok else (Status.UNSAT if ok is False else Status.UNKNOWN)
            hit = _bits_from_model(f, s.get_model())[None] if ok else np.zeros((0, plain.num_inputs), bool)
    if len(hit) and (plain.predict(hit)[0] == c or not bc.check(hit)[0]):
        raise SolverError("the counterexample does not change the class under the integer model", "report this bug")
    cc = int(plain.predict(hit)[0]) if len(hit) else None
    res = RobustResult(st, None if st is Status.UNKNOWN else st is Status.UNSAT, c, int(radius),
                       time.perf_counter() - t0, how, plain.to_data(hit)[: len(hit)], cc,
                       int((hit[0] != b0[0]).sum()) if len(hit) else None,
                       _verify(tm, plain, hit, np.array([c]), leave=True) if len(hit) else None, f.stats(),
                       config.seed, config_dict(config))
    if out is not None:
        write_outputs(res, out, model)
    return res
