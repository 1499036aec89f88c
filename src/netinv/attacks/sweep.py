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
import math
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import ConfigError, NetinvError
from .._utils.runinfo import config_dict, environment
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
          seed: int = 0) -> SweepResult:
    """Run ``n_trials`` attacks with sampled settings, then pool the candidates of the best runs.

    Args:
        model: the attacked model.
        attack_cls: an :class:`Attack` whose ``invert`` reports ``info['criterion']`` (lower = better).
            Default: :class:`~netinv.attacks.kkt.KKTReconstruction`.
        config: the base config; sampled values replace its fields. Default: the attack's defaults.
        space: name -> dimension (see ``Space``). Default: ``attack_cls.search_space``.
        n_trials: trials this call adds to the study (Optuna's semantics; a shared study grows from many calls).
        out: folder: ``trials/NNNN/`` (each run's candidates and run.json), the pooled ``candidates.npz`` and
            ``run.json``, and ``study.db`` for the default storage.
        storage: an Optuna storage URL (``sqlite:///path.db``, ``postgresql://…``). Default:
            ``sqlite:///OUT/study.db``.
        study_name: the study to create or continue.
        n_jobs: trials run in parallel on this machine (threads; torch's threads are divided among them).
        pool_top: how many of the best completed runs (by criterion) are pooled.
        n: candidates per run (the attack's default when None).
        seed: seeds the sampler; trial k's attack runs with seed ``seed + k``.

    Returns:
        A :class:`SweepResult`; the pooled candidates are also written to ``out``.

    Raises:
        ConfigError: a search space naming unknown settings, bad counts, or no trial completing.
    """
    try:
        import optuna
    except ImportError:
        raise ConfigError("the sweep needs optuna, which is not installed", "pip install optuna") from None

    cfg = config if config is not None else attack_cls(model).config
    space = dict(space if space is not None else getattr(attack_cls, "search_space", {}))
    _check_space(space, cfg)
    if n_trials < 0 or n_jobs < 1 or pool_top < 1:
        raise ConfigError(f"n_trials={n_trials}, n_jobs={n_jobs}, pool_top={pool_top}",
                          "use n_trials >= 0, n_jobs >= 1, pool_top >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="minimize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    quiet = {"show_progress": False} if "show_progress" in {f.name for f in dataclasses.fields(cfg)} else {}

    def objective(trial: Any) -> float:
        params = _suggest(trial, space)
        run_dir = out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("dir", str(run_dir.resolve()))
        # each trial gets its own module: torch.func.functional_call swaps parameters into the module it is given,
        # so threads sharing one module would run on each other's tensors
        own = dataclasses.replace(model, module=_own_copy(model.module)) if n_jobs > 1 else model
        attack = attack_cls(own, dataclasses.replace(cfg, **params, **quiet))
        try:
            cands = attack.invert(n, seed=seed + trial.number, out=run_dir)
        except NetinvError as e:  # a diverged run is a result of the sweep, not a crash of it
            trial.set_user_attr("error", str(e))
            raise optuna.TrialPruned(str(e)) from None
        crit = float(cands.info.get("criterion", math.nan))
        trial.set_user_attr("wall_time_s", cands.info.get("wall_time_s"))
        return crit if math.isfinite(crit) else math.inf

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // n_jobs))  # n_jobs threads × this = the cores torch had
    try:
        study.optimize(objective, n_trials=n_trials, n_jobs=n_jobs, catch=())
    finally:
        torch.set_num_threads(threads)
    trials = [{"number": t.number, "state": t.state.name, "params": t.params, "criterion": t.value,
               "dir": t.user_attrs.get("dir"), "error": t.user_attrs.get("error"),
               "wall_time_s": t.user_attrs.get("wall_time_s")} for t in study.trials]
    done = sorted((t for t in trials if t["state"] == "COMPLETE" and t["criterion"] is not None
                   and math.isfinite(t["criterion"])), key=lambda t: t["criterion"])
    if not done:
        raise ConfigError(f"no trial of study {study_name!r} completed", "widen or move the search space "
                          "(every run diverged?), or run more trials")
    chosen = done[:pool_top]
    pooled = pool_candidates([Path(t["dir"]) for t in chosen], [t["number"] for t in chosen])
    pooled.info = {"attack": f"sweep:{attack_cls.__name__}", "study_name": study_name, "storage": storage,
                   "seed": seed, "n_trials_this_call": n_trials, "n_jobs": n_jobs, "pool_top": pool_top,
                   "pooled_trials": [t["number"] for t in chosen], "criterion": chosen[0]["criterion"],
                   "best_params": done[0]["params"], "base_config": config_dict(cfg), "space": space,
                   "trials": trials, "wall_time_s": time.perf_counter() - t0,
                   "model": {**model.source, "input_range": list(model.input_range)},
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
        with np.load(f, allow_pickle=False) as z:
            for k in z.files:
                parts.setdefault(k, []).append(z[k])
            parts.setdefault("trial", []).append(np.full(len(z["x"]), trial_ids[i] if trial_ids else i))
    arrays = {k: torch.from_numpy(np.concatenate(v)) for k, v in parts.items()}
    x, y, score = arrays.pop("x"), arrays.pop("y"), arrays.pop("score", None)
    return Candidates(x, y, score, arrays).ranked()
