"""Hyper-parameter sweeps for any :class:`~netinv.attacks.base.Attack`, on Optuna, ranked without ground truth.

Haim et al. 2022 ran random sweeps of dozens of KKT runs (init scale, x step, λ_min, α) and pooled the candidates;
they selected runs by a score computed from the real training set, an oracle no attacker has. Here each run is
judged by the attacker-side criterion the attack reports (``Candidates.info['criterion']``, lower = better: for KKT
the relative stationarity residual), and the candidates of the best runs are pooled and ranked by their own
attacker-side score. The study lives in an Optuna storage: SQLite in the output folder by default, or any
database URL so that many machines add trials to one study.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import threading
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import ConfigError, DivergedError, first_line
from .._utils import checkpoint
from .._utils.progress import STOP, progress_bar
from .._utils.runinfo import config_dict, environment
from ..data.npz import read_arrays
from ..models.loaded import LoadedModel
from .base import Attack, Candidates
from .kkt import KKTReconstruction

__all__ = ["SweepResult", "sweep", "pool_candidates"]

#: a search dimension: ("log" | "uniform", low, high), ("int", low, high) or ("categorical", [choices])
Space = dict[str, tuple[Any, ...]]


@dataclass
class SweepResult:
    """What a sweep produced.

    Attributes:
        candidates: the pooled candidates of the ``pool_top`` best runs, best score first; ``arrays['trial']`` says
            which trial each came from.
        best_params: the parameters of the run with the lowest criterion.
        trials: one dict per trial of the study (number, state, params, criterion, dir).
        study_name, storage: where the study lives (pass them again to add trials).
    """

    candidates: Candidates
    best_params: dict[str, Any]
    trials: list[dict[str, Any]]
    study_name: str
    storage: str


def _suggest(trial: Any, space: Space) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, dim in space.items():
        kind = dim[0]
        if kind in ("log", "uniform"):
            params[name] = trial.suggest_float(name, float(dim[1]), float(dim[2]), log=kind == "log")
        elif kind == "int":
            params[name] = trial.suggest_int(name, int(dim[1]), int(dim[2]))
        elif kind == "categorical":
            params[name] = trial.suggest_categorical(name, list(dim[1]))
        else:
            raise ConfigError(f"search dimension {name!r} has kind {kind!r}", "use log, uniform, int or categorical")
    return params


def _check_space(space: Space, config: Any) -> None:
    fields = {f.name for f in dataclasses.fields(config)}
    bad = sorted(set(space) - fields)
    if bad:
        raise ConfigError(f"search space names {bad} are not settings of {type(config).__name__}",
                          f"use some of: {', '.join(sorted(fields))}")


def sweep(model: LoadedModel, attack_cls: type[Attack] = KKTReconstruction, config: Any = None, *,
          space: Space | None = None, n_trials: int = 16, out: str | Path, storage: str | None = None,
          study_name: str = "netinv-sweep", n_jobs: int = 1, pool_top: int = 4, n: int | None = None,
          seed: int = 0, fixed: Iterable[str] = (), resume: bool = False,
          show_progress: bool | None = None) -> SweepResult:
    """Run ``n_trials`` attacks with sampled settings, then pool the candidates of the best runs.

    Trials run in batches of ``n_jobs``: a batch's settings are drawn one after the other in this thread, each by a
    sampler seeded with ``seed + k`` (k = the trial's index in the study), then the batch runs in parallel. So the
    same seed and ``n_jobs`` give the same trials, sequential or parallel. Ctrl-C marks the running trials as
    interrupted (their attacks keep their last checkpoint); ``resume=True`` finishes them from those checkpoints
    and then the trials the interrupted call had left, with the result an uninterrupted call would have given.

    Args:
        model: the attacked model.
        attack_cls: an :class:`Attack` whose ``invert`` reports ``info['criterion']`` (lower = better).
            Default: :class:`~netinv.attacks.kkt.KKTReconstruction`.
        config: the base config; sampled values replace its fields. Default: the attack's defaults.
        space: name -> dimension (see ``Space``). Default: ``attack_cls.search_space`` without the settings that
            ``config`` changes from the attack's defaults or that ``fixed`` names (a setting the user fixed is not
            swept).
        n_trials: trials this call adds to the study (Optuna's semantics; a shared study grows from many calls).
        out: folder: ``trials/NNNN/`` (each run's candidates and run.json), the pooled ``candidates.npz`` and
            ``run.json``, and ``study.db`` for the default storage.
        storage: an Optuna storage URL (``sqlite:///path.db``, ``postgresql://…``). Default:
            ``sqlite:///OUT/study.db``.
        study_name: the study to create or continue; it must have been run on the same model with the same base
            settings, candidate count and search space.
        n_jobs: trials run in parallel on this machine (threads; torch's threads are divided among them).
        pool_top: how many of the best completed runs (by criterion) are pooled.
        n: candidates per run (the attack's default when None).
        seed: seeds the sampler and the attacks (trial k's attack runs with seed ``seed + k``).
        fixed: settings kept at ``config``'s value even when the default space sweeps them.
        resume: finish an interrupted call first (``n_trials`` is then the interrupted call's).
        show_progress: a bar over the trials with the best criterion so far (None: when attached to a terminal).

    Returns:
        A :class:`SweepResult`; the pooled candidates are also written to ``out``.

    Raises:
        ConfigError: a search space naming unknown settings, bad counts, a storage that does not open, a study
            run with another model or settings, or no trial completing.
    """
    try:
        import optuna
    except ImportError:
        raise ConfigError("the sweep needs optuna, which is not installed", "pip install optuna") from None

    defaults = attack_cls(model).config
    cfg = config if config is not None else defaults
    if space is None:
        changed = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(defaults, f.name)}
        space = {k: v for k, v in getattr(attack_cls, "search_space", {}).items()
                 if k not in changed and k not in set(fixed)}
    space = dict(space)
    _check_space(space, cfg)
    if n_trials < 0 or n_jobs < 1 or pool_top < 1:
        raise ConfigError(f"n_trials={n_trials}, n_jobs={n_jobs}, pool_top={pool_top}",
                          "use n_trials >= 0, n_jobs >= 1, pool_top >= 1")
    if hasattr(cfg, "validate"):  # a bad fixed setting would prune every trial as if it had diverged
        cfg.validate()
    out = Path(out)
    if resume and storage is None and not (out / "study.db").is_file():
        raise ConfigError(f"nothing to resume in {out}: it holds no study", "drop --resume to start the sweep")
    own_url = f"sqlite:///{(out / 'study.db').resolve()}"
    own_db = storage is None or _sqlite_file(storage) == (out / "study.db").resolve()  # no other machine's trials
    storage = storage or own_url
    study = _open_study(optuna, storage, study_name, out, own=own_url == storage)
    quiet = {"show_progress": False} if "show_progress" in {f.name for f in dataclasses.fields(cfg)} else {}
    base = {k: v for k, v in config_dict(cfg).items() if k != "show_progress"}
    _same_setup(study, {"model": {**_identity(model), "input_range": list(model.input_range)}, "n": n,
                        "base_config": base, "space": {k: list(v) for k, v in space.items()}}, storage, study_name)

    plan, resumable = _plan(study, optuna, study_name, resume=resume, own_db=own_db, n_trials=n_trials,
                            n_jobs=n_jobs, out=out)
    _claim_trials_folder(out, study_name)

    def run(trial: Any, k: int) -> float:
        params = trial.params
        run_dir = out / "trials" / f"{k:04d}"
        trial.set_user_attr("dir", str(run_dir.resolve()))
        # each trial gets its own module: torch.func.functional_call swaps parameters into the module it is given,
        # so threads sharing one module would run on each other's tensors
        own = dataclasses.replace(model, module=_own_copy(model.module)) if n_jobs > 1 else model
        attack = attack_cls(own, dataclasses.replace(cfg, **params, **quiet))
        try:  # an interrupted trial continues from its last checkpoint; any other starts afresh
            cands = attack.invert(n, seed=seed + k, out=run_dir, resume=k in resumable)
        except DivergedError as e:  # a diverged run is a result of the sweep, not a crash of it (other errors are)
            trial.set_user_attr("error", str(e))
            return math.nan
        trial.set_user_attr("wall_time_s", cands.info.get("wall_time_s"))
        crit = float(cands.info.get("criterion", math.nan))
        return crit if math.isfinite(crit) else math.inf

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // n_jobs))  # n_jobs threads × this = the cores torch had
    best = min((t.value for t in study.trials if t.state.name == "COMPLETE" and t.value is not None),
               default=math.inf)
    try:
        with progress_bar(sum(len(b) for b in plan), "sweep", show=show_progress) as bar:
            for batch in plan:
                trials = []
                for k, params in batch:  # drawn in order, each by its own seeded sampler: reproducible
                    if params is not None:
                        study.enqueue_trial(params, user_attrs={"k": k})
                    study.sampler = optuna.samplers.TPESampler(seed=seed + k)
                    trial = study.ask()
                    trial.set_user_attr("k", k)
                    _suggest(trial, space)
                    trials.append((trial, k))
                for (trial, _), value in zip(trials, _run_batch(run, trials, study, optuna), strict=True):
                    if math.isnan(value):
                        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    else:
                        study.tell(trial, value)
                        best = min(best, value)
                    bar.update(1, best_criterion=best)
    finally:
        torch.set_num_threads(threads)
    return _pool(study, out, attack_cls, model, cfg, space, seed, n_trials, n_jobs, pool_top, study_name, storage,
                 time.perf_counter() - t0)


def _plan(study: Any, optuna: Any, study_name: str, *, resume: bool, own_db: bool, n_trials: int, n_jobs: int,
          out: Path) -> tuple[list[list[tuple[int, dict[str, Any] | None]]], set[int]]:
    """The batches of trials this call runs, as (k, params to repeat or None), and the trials that continue from a
    checkpoint: with ``resume``, an interrupted call's trials first, then those it had planned and not started."""
    # trial k: index in the study (interrupted trials keep theirs when resumed); its folder, seeds and batch
    ks = [t.user_attrs.get("k", t.number) for t in study.trials]
    finished = {t.user_attrs.get("k", t.number) for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")}
    # interrupted: Ctrl-C marks them; a killed process (SIGKILL, power loss) leaves them RUNNING, which in the
    # folder's own database no live process can be (on a shared server another machine may be running them)
    pending = sorted({t.user_attrs.get("k", t.number) for t in study.trials
                      if t.user_attrs.get("interrupted") or (own_db and t.state.name == "RUNNING")} - finished)
    if resume:  # a killed call's RUNNING trials: recorded as interrupted, as Ctrl-C records them, and redone below
        for t in study.trials:
            if own_db and t.state.name == "RUNNING":
                optuna.trial.Trial(study, t._trial_id).set_user_attr("interrupted", True)
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    running = sorted({t.user_attrs.get("k", t.number) for t in study.trials if t.state.name == "RUNNING"})
    if resume and running and not own_db:
        warnings.warn(f"trials {running} of study {study_name!r} are RUNNING in the shared storage: they are left to "
                      "the machines running them (shared storage cannot tell a killed trial from a running one); a "
                      "killed one stays RUNNING and is neither redone nor pooled", UserWarning, stacklevel=3)
    if pending and not resume:
        warnings.warn(f"trials {pending} of study {study_name!r} were interrupted; resume=True (--resume) finishes "
                      "them from their checkpoints", UserWarning, stacklevel=3)  # the caller of sweep
    next_k = max(ks) + 1 if ks else 0
    planned = int(study.user_attrs.get("planned", 0))
    if resume and not planned and not pending:  # stopped before its first trial was planned: nothing was done
        raise ConfigError(f"nothing to resume in {out}: the sweep had not started a trial",
                          "drop --resume to start the sweep")
    plan: list[list[tuple[int, dict[str, Any] | None]]] = []  # batches of (k, params to repeat or None)
    if resume:
        old = {t.user_attrs.get("k", t.number): t.params for t in study.trials}
        plan += [[(k, old[k]) for k in pending]] if pending else []
        fresh = list(range(next_k, max(planned, next_k)))
    else:
        fresh = list(range(next_k, next_k + n_trials))
        study.set_user_attr("planned", max(planned, next_k + n_trials))
    checkpoint.STATE_ON_DISK = True  # the study and its plan are the sweep's resumable state (Ctrl-C names --resume)
    plan += [[(k, None) for k in fresh[i:i + n_jobs]] for i in range(0, len(fresh), n_jobs)]
    return plan, set(pending) if resume else set()  # only interrupted trials continue from a checkpoint


def _claim_trials_folder(out: Path, study_name: str) -> None:
    """Trial folders hold one study's runs: another study's would mix in."""
    marker = out / "trials" / ".study"
    holder = marker.read_text().strip() if marker.is_file() else study_name
    if holder != study_name:
        raise ConfigError(f"{out / 'trials'} holds the trials of study {holder!r}, not "
                          f"{study_name!r}", "give this study its own --out")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(study_name + "\n")


def _run_batch(run: Any, trials: list[tuple[Any, int]], study: Any, optuna: Any) -> list[float]:
    """Run a batch's trials (in daemon threads when there are several, so Ctrl-C is not held up by them); on
    Ctrl-C, the trials that had not finished are marked interrupted (FAIL) and the interrupt goes on."""
    results: list[float | BaseException | None] = [None] * len(trials)

    def one(i: int) -> None:
        try:
            results[i] = run(*trials[i])
        except BaseException as e:  # handed to the main thread
            results[i] = e

    workers: list[threading.Thread] = []
    try:
        if len(trials) == 1:
            try:
                results[0] = run(*trials[0])
            except Exception as e:  # told FAIL below, then raised
                results[0] = e
        else:
            workers = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(trials))]
            for w in workers:
                w.start()
            for w in workers:
                while w.is_alive():
                    w.join(0.2)
    except KeyboardInterrupt:
        if workers:  # stop the workers at their next iteration and wait for them (their checkpoints stay)
            STOP.set()
            try:
                for w in workers:
                    w.join(60)
            finally:
                STOP.clear()
        for (trial, _), r in zip(trials, results, strict=True):
            if isinstance(r, float) and not math.isnan(r):  # finished before the interrupt: kept
                study.tell(trial, r)
            elif isinstance(r, float):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                trial.set_user_attr("interrupted", True)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    for r in results:
        if isinstance(r, BaseException):
            for t, _ in trials:
                study.tell(t, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            raise r
    return [float(r) for r in results]  # type: ignore[arg-type]


def _sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL, resolved (relative paths, links); None for other storage."""
    return Path(url.removeprefix("sqlite:///")).resolve() if url.startswith("sqlite:///") else None


def _open_study(optuna: Any, url: str, study_name: str, out: Path, *, own: bool) -> Any:
    """The study at ``url`` (``own``: the folder's study.db), created or continued; a storage that does not open is
    one ConfigError (nothing written)."""
    if own:
        out.mkdir(parents=True, exist_ok=True)
        if (out / "study.db").is_symlink():  # a database would be written through the link, wherever it points
            raise ConfigError(f"{out / 'study.db'} is a link", "remove it, use a new --out, or name the database "
                              "with --storage sqlite:///PATH")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(storage=url, study_name=study_name, direction="minimize", load_if_exists=True)
    except Exception as e:  # a bad URL, a missing database driver, an unreachable server, a missing folder
        raise ConfigError(f"cannot open the Optuna storage {url!r}: {first_line(e, 200)}",
                          "give a URL Optuna can open, e.g. sqlite:///path/to/study.db (an existing folder), or "
                          "postgresql://user@host/db with its driver installed (pip install psycopg2-binary)") \
            from None


def _identity(model: LoadedModel) -> dict[str, Any]:
    """What names the attacked model across calls: its source, without load-time details such as the device."""
    keep = ("format", "path", "class", "factory", "weights", "mean", "input_shape")
    # the contents too: a model file replaced at the same path must not be pooled with the old one's trials
    return {**{k: v for k, v in model.source.items() if k in keep}, "sha256": model.digest()}


def _same_setup(study: Any, setup: dict[str, Any], storage: str, study_name: str) -> None:
    """Record the study's model and settings on its first call; refuse a later call that changes them (its trials
    would be pooled and ranked with runs of another model or setting)."""
    setup = json.loads(json.dumps(setup, default=str))  # as the storage keeps it
    old = study.user_attrs.get("setup")
    if old is None:
        study.set_user_attr("setup", setup)
        return
    for key in setup:
        if old.get(key) != setup[key]:
            raise ConfigError(f"study {study_name!r} in {storage} was run with {key} {old.get(key)}, this call gives "
                              f"{setup[key]}", "give another --out, or the same model and "
                              "settings as the study's earlier calls")


def _pool(study: Any, out: Path, attack_cls: type[Attack], model: LoadedModel, cfg: Any, space: Space, seed: int,
          n_trials: int, n_jobs: int, pool_top: int, study_name: str, storage: str, wall: float) -> SweepResult:
    trials = [{"number": t.number, "index": t.user_attrs.get("k", t.number), "state": t.state.name,
               "params": t.params, "criterion": t.value, "dir": t.user_attrs.get("dir"),
               "error": t.user_attrs.get("error"), "interrupted": bool(t.user_attrs.get("interrupted")),
               "wall_time_s": t.user_attrs.get("wall_time_s")} for t in study.trials]
    done = sorted((t for t in trials if t["state"] == "COMPLETE" and t["criterion"] is not None
                   and math.isfinite(t["criterion"])), key=lambda t: t["criterion"])
    if not done:
        errors = sorted({t["error"] for t in trials if t["error"]})
        raise ConfigError(f"no trial of study {study_name!r} completed"
                          + (f" ({len(errors)} distinct error(s), e.g. {errors[0]})" if errors else ""),
                          "widen or move the search space, or run more trials")
    chosen = done[:pool_top]
    pooled = pool_candidates([Path(t["dir"]) for t in chosen], [t["index"] for t in chosen])
    pooled.info = {"attack": f"sweep:{attack_cls.__name__}", "study_name": study_name, "storage": storage,
                   "seed": seed, "n_trials_this_call": n_trials, "n_jobs": n_jobs, "pool_top": pool_top,
                   "pooled_trials": [t["index"] for t in chosen], "criterion": chosen[0]["criterion"],
                   "best_params": done[0]["params"], "base_config": config_dict(cfg), "space": space,
                   "trials": trials, "wall_time_s": wall,
                   "model": model.record(),
                   "environment": environment(model.device)}
    pooled.save(out)
    return SweepResult(pooled, done[0]["params"], trials, study_name, storage)


_COPY_LOCK = threading.Lock()


def _own_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``module`` for one parallel trial.

    Copying a ``torch.export`` graph (a loaded .pt2) makes torch warn "`isinstance(treespec, LeafSpec)` is
    deprecated" (a FutureWarning): the graph's pytree specs (its ``_in_spec`` / ``_out_spec`` and the code
    generator's copy of them) hold leaf specs, and ``copy.deepcopy`` rebuilds each through the deprecated
    ``LeafSpec`` class. The specs are immutable and could be shared, but ``fx.Graph.__deepcopy__`` copies its code
    generator without the memo, so no way of calling ``deepcopy`` avoids it; the warning is about torch's own
    internals, not about anything the user can change, so exactly that warning is silenced here. The lock keeps
    the trial threads from entering ``catch_warnings`` (which swaps the process-wide filters) at the same time.
    """
    with _COPY_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)
        return copy.deepcopy(module)


def pool_candidates(dirs: list[Path], trial_ids: list[int] | None = None) -> Candidates:
    """Concatenate the ``candidates.npz`` of several runs, ranked by their attacker-side ``score``.

    Args:
        dirs: run folders, each with a ``candidates.npz`` (x, y, score, further arrays).
        trial_ids: an id per folder, stored per candidate as ``arrays['trial']``. Default: 0, 1, …

    Returns:
        The pooled :class:`Candidates`, best score first.

    Raises:
        ConfigError: a folder without candidates (e.g. a trial run on another machine whose files are not here).
    """
    parts: dict[str, list[np.ndarray]] = {}
    for i, d in enumerate(dirs):
        f = Path(d) / "candidates.npz"
        if not f.is_file():
            raise ConfigError(f"{f} is missing", "pool on the machine that ran the trial, or copy its folder here")
        z = read_arrays(f, what="a trial's candidates", fix="rerun that trial (sweep --resume) or remove its folder")
        if not {"x", "y"} <= set(z):
            raise ConfigError(f"{f} has arrays {sorted(z)}, not x and y", "rerun that trial or remove its folder")
        for k, v in z.items():
            if k not in ("meta", "trial"):  # each run's own seed; the pool's record is the sweep's run.json
                parts.setdefault(k, []).append(v)
        parts.setdefault("trial", []).append(np.full(len(z["x"]), trial_ids[i] if trial_ids else i))
    arrays = {k: torch.from_numpy(np.concatenate(v)) for k, v in parts.items()}
    x, y, score = arrays.pop("x"), arrays.pop("y"), arrays.pop("score", None)
    return Candidates(x, y, score, arrays).ranked()
