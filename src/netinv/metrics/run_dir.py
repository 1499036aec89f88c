"""Evaluating an attack's output folder: its candidates, the model its ``run.json`` records (read as untrusted data:
a recorded factory is never imported, a replaced model file is refused) and the member / non-member sets, handed
to :func:`netinv.metrics.evaluation.evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import ConfigError, DataError, ModelError
from .._utils.checkpoint import read_json_object
from ..data import Dataset
from ..data.npz import read_arrays
from ..models.loaded import LoadedModel
from .evaluation import Evaluation, EvaluationConfig, evaluate


def evaluate_dir(run_dir: str | Path, model: LoadedModel | str | Path | None = None,
                 train_npz: str | Path | None = None, heldout_npz: str | Path | None = None, *,
                 seed: int | None = None,
                 n_best: int = 10, model_options: dict[str, Any] | None = None,
                 config: EvaluationConfig = EvaluationConfig()) -> Evaluation:
    """Evaluate ``run_dir/candidates.npz`` (``x`` in data space, ``y``, optional ``lam``; a generator run's
    ``samples.npz`` when there is no candidates.npz) and write the results there.

    Args:
        run_dir: an attack's output folder.
        model: the attacked model (a ``LoadedModel`` or anything ``load_model`` reads). Default: the model recorded
            under the key ``model`` of ``run_dir/run.json``: a path (or a dict with ``path``) if it still exists.
            A recorded ``package.module:factory`` is never imported on the record's word (a run.json may come from
            anyone): name it, and its recorded weights, input shape and mean are used.
        train_npz / heldout_npz: training and held-out sets as npz (``x``, ``y``), for a user model; a netinv
            checkpoint's own sets (its ``meta['data']``) are used when these are not given.
        seed: as :func:`evaluate`. Default: the seed ``run_dir/run.json`` records (the attack's, so ``netinv audit
            --seed S`` and ``reconstruct --seed S`` followed by ``evaluate`` give the same figures), else 0.
        n_best, config: as :func:`evaluate`.
        model_options: keyword arguments for ``load_model`` (weights, input_shape, input_range, mean, device).

    Returns:
        The :class:`Evaluation` (also written to ``run_dir/evaluation.json`` with its figures).

    Raises:
        DataError: no or unreadable candidates.npz, missing data sets.
        ConfigError: only one of train_npz / heldout_npz.
        ModelError: the model does not load; for a recorded model that has moved (a path that is gone, a factory
            whose weights moved or whose module is not importable) the fix names ``--model``.
    """
    run_dir = Path(run_dir)
    npz = run_dir / "candidates.npz"
    if not npz.is_file() and (run_dir / "samples.npz").is_file():
        npz = run_dir / "samples.npz"
    x, y = _read_candidates(npz)
    record = _run_record(run_dir)  # read once: the model, its digest and the seed the attack recorded
    lm = _attacked_model(record, run_dir, model, model_options)
    train, heldout = _member_sets(lm, train_npz, heldout_npz)
    if seed is None:
        seed = record["seed"] if type(record.get("seed")) is int else 0
    return evaluate(x, train, heldout, model=lm, candidate_labels=y, seed=seed, out=run_dir, n_best=n_best,
                    config=config)


def _attacked_model(record: dict[str, Any], run_dir: Path, model: LoadedModel | str | Path | None,
                    model_options: dict[str, Any] | None) -> LoadedModel | None:
    """The model :func:`evaluate_dir` evaluates against: the one given, else the one ``run.json`` records (with the
    options it was attacked with); refused when a file at the recorded path is not the attacked model any more."""
    from ..models.loading import load_model

    recorded, recorded_options = _recorded_model(record, run_dir)
    options = {k: v for k, v in (model_options or {}).items() if v is not None}
    named = model is not None
    from_record = model is None or (isinstance(model, str | Path) and recorded is not None
                                    and (str(model) == recorded or Path(model).resolve() == Path(recorded).resolve()))
    if model is None and recorded is not None and _names_code(recorded, recorded_options):
        # a run.json is data and may come from anyone: the code it names is imported only when the user names it
        weights = recorded_options.get("weights")
        raise ModelError(f"{run_dir / 'run.json'} records the factory model {recorded}; netinv does not import code "
                         "named in a run directory", f"name it yourself if you trust it: --model {recorded}"
                         + (f" --weights {weights}" if weights else ""))
    if from_record:
        model = model if model is not None else recorded
        # the weights / mean / input shape the attack ran with, unless overridden
        options = {**recorded_options, **options}
    if from_record and model is not None and "weights" not in recorded_options and not Path(model).exists():
        raise ModelError(f"the attacked model {model}, recorded in {run_dir / 'run.json'}, is no longer there",
                         "name it: --model PATH (with --input-shape / --mean as in the attack)")
    if model is None and options:
        given = ", ".join("--" + k.replace("_", "-") for k in sorted(options) if k != "device")
        if given:
            raise ConfigError(f"{given} given without a model to apply to (the candidates are read in data space, as "
                              "written)", "add --model MODEL, or leave out the model options")
    try:
        lm = load_model(model, **options) if model is not None else None
    except ModelError as e:
        if not (from_record and "weights" in recorded_options):
            raise
        # a factory model: its code and weights live outside run.json, and either may have moved since the attack
        raise ModelError(f"cannot reload the attacked model {model} recorded in {run_dir / 'run.json'}: {e.problem}",
                         f"name it: --model {model} --weights FILE (and --input-shape / --mean as in the attack)"
                         + (f"; {e.fix}" if e.fix else "")) from None
    if from_record and lm is not None:
        digest = record.get("model_sha256")
        if isinstance(digest, str) and digest != lm.digest():  # the file at the recorded path was replaced since, or
            # other options were given: margins and class figures would be those of another model
            raise ModelError(f"the model {model} as loaded now is not the one the attack ran on (its weights, mean, "
                             f"input shape or input range differ from the model_sha256 in {run_dir / 'run.json'})",
                             "rerun the attack on this model, or give the attacked model with the options it was "
                             "attacked with" if named else "the file was replaced since the attack: give the attacked "
                             "model with --model, or rerun the attack on this one")
    return lm


def _member_sets(lm: LoadedModel | None, train_npz: str | Path | None,
                 heldout_npz: str | Path | None) -> tuple[Dataset, Dataset]:
    """The training and held-out sets: the npz files given (read with the model's class indices), else the ones a
    netinv checkpoint records."""
    from ..data import load_model_data, split_from_record

    if (train_npz is None) != (heldout_npz is None):
        raise ConfigError("only one of --train / --heldout was given", "give both npz files, or neither")
    if train_npz is not None:
        return load_model_data(train_npz), load_model_data(heldout_npz)  # the model's class indices
    if lm is not None and isinstance(lm.meta.get("data"), dict):
        split = split_from_record(lm.meta["data"])
        return split.train, split.heldout
    raise DataError("no training / held-out sets for this evaluation",
                    "give a netinv checkpoint as the model, or --train T.npz --heldout H.npz")


def _read_candidates(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not path.is_file():
        raise DataError(f"no candidates at {path}", "point at the output folder of a netinv reconstruct run")
    f = read_arrays(path, what="candidates", fix="rerun the attack to rewrite it, or save candidates with np.savez "
                    "(x, and y)")
    if "x" not in f:
        raise DataError(f"{path} has arrays {sorted(f)}, no x", "save candidates as x (and y, lam)")
    x = np.asarray(f["x"])
    if x.dtype.kind not in "biuf" or ("y" in f and f["y"].dtype.kind not in "biuf"):
        raise DataError(f"x or y in {path} is not numeric", "save candidates as a float array x and integer labels y")
    x = torch.from_numpy(x.astype(np.float64 if x.dtype == np.float64 else np.float32, copy=False))
    y = torch.from_numpy(np.asarray(f["y"]).astype(np.int64)) if "y" in f else None
    return x, y


def _names_code(recorded: str, options: dict[str, Any]) -> bool:
    """Whether a recorded model would be loaded by importing a module (``pkg.mod:factory``), not read from a file."""
    return "weights" in options or (":" in recorded and not Path(recorded).exists())


def _run_record(run_dir: Path) -> dict[str, Any]:
    """``run_dir/run.json`` ({} when there is none).

    Raises:
        DataError: a run.json that is not one readable JSON object (it may come from anyone).
    """
    if not (run_dir / "run.json").exists():
        return {}
    try:
        return read_json_object(run_dir / "run.json")
    except ValueError as e:
        raise DataError(f"cannot read {run_dir / 'run.json'}: {e}", "restore it, or remove it and give the model "
                        "and data sets yourself (--model, --train, --heldout)") from None


def _recorded_model(record: dict[str, Any], run_dir: Path) -> tuple[str | None, dict[str, Any]]:
    """The model an attack recorded under the key ``model`` in ``run.json`` (a path, or a dict with ``path``; it may
    have moved since), or a factory model (``{"format": "factory", "factory": "pkg.mod:fn", "weights": FILE}``), and the
    ``load_model`` options it was attacked with (weights, mean, input shape and range). ``record``: the run.json
    read by :func:`_run_record`."""
    rec = record.get("model")
    options: dict[str, Any] = {}
    if isinstance(rec, dict) and rec.get("format") == "factory" and isinstance(rec.get("factory"), str):
        path = rec["factory"]  # reloaded by load_model, which says what is missing (evaluate_dir adds --model)
        options["weights"] = rec.get("weights")
    else:
        path = rec.get("path") if isinstance(rec, dict) else rec
        if not isinstance(path, str):
            return None, {}
        if not Path(path).is_absolute() and ":" not in path:  # netinv records absolute paths; another is read
            # beside run.json, never from wherever the command happens to run (pkg.mod:fn is refused below)
            path = str(run_dir / path)
    if isinstance(rec, dict):
        for key in ("mean", "input_shape", "input_range"):
            v = rec.get(key)
            if v is None:
                continue
            ok = isinstance(v, str) if key == "mean" else (
                isinstance(v, list) and all(isinstance(n, int | float) and not isinstance(n, bool) for n in v))
            if not ok:
                raise ModelError(f"{run_dir / 'run.json'} records {key} {v!r}, which is not a "
                                 f"{'path' if key == 'mean' else 'list of numbers'}",
                                 "restore the run's run.json, or name the model with --model and its options")
            options[key] = tuple(v) if isinstance(v, list) else v
    return path, options
