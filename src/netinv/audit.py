"""``audit``: the privacy auditor's one call. Reconstruct the training set from the weights with the KKT attack
(attacker-side defaults, no ground truth), then measure leakage against null baselines and write a report."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError, DataError, NetinvError
from ._utils.runinfo import config_dict
from .attacks.base import Candidates
from .data import Dataset, load_model_data, split_from_record
from .metrics.evaluation import Evaluation, check_sets, drop_members, evaluate, model_fit
from .models.loaded import LoadedModel
from .models.loading import check_compatible, load_model
from .report.render import LEVELS, format_p, render, render_seeds

if TYPE_CHECKING:
    from .attacks.kkt import KKTConfig


@dataclass
class AuditResult:
    """What :func:`audit` produced: the candidates, their evaluation and the report files."""

    candidates: Candidates
    evaluation: Evaluation
    report: dict[str, Path]
    verdict: dict[str, Any] = field(default_factory=dict)  # level, p_above_tau, p_auc, verdict (report.render.assess)

    def __repr__(self) -> str:  # the headline figures, not the tensors
        a = self.evaluation.attack
        return (f"AuditResult({len(self.candidates)} candidates, {a.n_leaked}/{self.evaluation.settings['n_train']} "
                f"members above tau, AUC {a.auc:.3f}, report {self.report.get('html')})")

    def table(self) -> str:
        """The evaluation's table (attack beside its null baselines)."""
        return self.evaluation.table()


def audit(model: LoadedModel | str | Path, *, out: str | Path, train: Dataset | str | Path | None = None,
          heldout: Dataset | str | Path | None = None, config: KKTConfig | None = None, m: int | None = None,
          seed: int = 0, device: str = "auto", resume: bool = False,
          model_options: dict[str, Any] | None = None) -> AuditResult:
    """Reconstruct, evaluate, report.

    Args:
        model: the released classifier (a ``LoadedModel`` or anything :func:`netinv.load_model` reads).
        out: folder: ``kkt/`` (candidates, run.json, checkpoints), ``evaluation.json`` and figures, ``report.*``.
        train / heldout: the training set (members) and non-members: data sets, or npz files / class folders read
            with the model's own class indices (:func:`netinv.data.load_model_data`); default: the ones a netinv
            checkpoint records.
        config: a ``KKTConfig`` (default: the attack's defaults), checked before the model is loaded.
        m: number of candidates. Default: twice the training set (Haim et al.).
        seed: seeds the attack and the evaluation.
        device: ``auto``, ``cpu`` or ``cuda``.
        resume: continue an interrupted attack from its last checkpoint.
        model_options: ``load_model`` keyword arguments for a user model (input_shape, input_range, mean …).

    Returns:
        An :class:`AuditResult`; ``out/report.html`` is the page to read.

    Raises:
        DataError: no training/held-out sets (give them for a user model).
        ConfigError: no output folder, or a config that is not a ``KKTConfig``.
    """
    if not isinstance(out, str | Path):
        raise ConfigError(f"out is {out!r}", "give the folder for the report, e.g. out='runs/audit'")
    caught: list[str] = []
    with warnings.catch_warnings():  # each warning is shown when it is raised, and listed in the report
        warnings.simplefilter("always", UserWarning)  # also those an earlier call in this process already showed
        show = warnings.showwarning

        def record(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, UserWarning):  # netinv's; not libraries' deprecations
                caught.append(str(message))
            show(message, category, *args, **kwargs)

        warnings.showwarning = record
        return _audit(model, out=Path(out), train=train, heldout=heldout, config=config, m=m, seed=seed,
                      device=device, resume=resume, model_options=model_options, caught=caught)


def _audit(model: LoadedModel | str | Path, *, out: Path, train: Dataset | str | Path | None,
           heldout: Dataset | str | Path | None, config: Any, m: int | None, seed: int, device: str, resume: bool,
           model_options: dict[str, Any] | None, caught: list[str]) -> AuditResult:
    from .attacks.kkt import KKTConfig, KKTReconstruction, criterion_note, members_note

    cfg = config if config is not None else KKTConfig()
    if not isinstance(cfg, KKTConfig):  # before any loading: a wrong argument is said at once
        raise ConfigError(f"config is a {type(cfg).__name__}, not a KKTConfig",
                          "pass config=KKTConfig(iterations=...) (netinv.attacks.KKTConfig)")
    cfg.validate()
    lm = load_model(model, device=device, **(model_options or {}))
    train = load_model_data(train) if train is not None else None
    heldout = load_model_data(heldout) if heldout is not None else None
    if train is None or heldout is None:
        if not isinstance(lm.meta.get("data"), dict):
            raise DataError("the audit needs the training set and held-out non-members to measure leakage",
                            "pass train= and heldout= (CLI: --train T.npz --heldout H.npz)")
        split = split_from_record(lm.meta["data"])
        train, heldout = train or split.train, heldout or split.heldout
    check_compatible(lm, train, reshape=True)  # the evaluation reshapes images for a model on flattened images
    check_sets(train, heldout)  # what the evaluation refuses, refused before the attack rather than after it
    heldout = drop_members(train, heldout)
    acc_train, acc_heldout = model_fit(lm, train, heldout, stacklevel=4)
    if (size := members_note(len(train), lm.input_shape)) is not None:
        warnings.warn(size, UserWarning, stacklevel=4)  # on stderr, and listed in the report with the others
    t0 = time.perf_counter()
    n = m if m is not None else 2 * len(train)
    cands = KKTReconstruction(lm, cfg).invert(n, seed=seed, out=out / "kkt", resume=resume)
    attack_s = time.perf_counter() - t0
    ev = evaluate(cands.x, train, heldout, model=lm, seed=seed, out=out, check_fit=False)  # checked above
    figures = {"Best reconstructions (top) above their nearest training images (bottom), best first":
               ev.figures["best_pairs"]}
    if "ssim_vs_margin" in ev.figures:
        figures["Each training image's score against its margin (Haim et al. Fig. 4: the theory says members with "
                "the smallest margins are the recoverable ones); dashed lines: each candidate set's own τ"] = \
            ev.figures["ssim_vs_margin"]
    who = lm.source.get("path") or lm.source.get("factory") or lm.source.get("class") or lm.source.get("format")
    mean = lm.source.get("mean") or ("the checkpoint's" if lm.mean is not None else "none")
    info = {"model": who, "mean image": mean, "input range": list(lm.input_range), "members": len(train),
            "non-members": len(heldout), "candidates": len(cands), "seed": seed,
            "attack": "KKT reconstruction (Haim et al. 2022; Buzaglo et al. 2023)",
            "attack config": config_dict(cfg), "attack wall time (s)": round(attack_s, 1),
            "train accuracy": acc_train, "held-out accuracy": acc_heldout,
            "share of the weights the candidates leave unexplained": round(cands.info["criterion"], 4)}
    note = criterion_note(cands.info["criterion"], next_step="the evaluation in this report says whether anything "
                          "leaks beyond the null baselines")
    if note:
        info["note"] = note
    for i, msg in enumerate(dict.fromkeys(caught)):  # each distinct warning once
        info[f"warning {i + 1}"] = msg
    record = ev.to_dict()
    verdict = record["verdict"]
    report = render("netinv privacy audit: training-data reconstruction", record, ev.table(), figures, info, out,
                    verdict=verdict)
    return AuditResult(cands, ev, report, verdict)


@dataclass
class SeedsAudit:
    """What :func:`audit_seeds` produced: one :class:`AuditResult` per seed, the seed of the worst verdict, and the
    summary report's files."""

    runs: dict[int, AuditResult]
    worst_seed: int
    report: dict[str, Path]

    @property
    def worst(self) -> AuditResult:
        return self.runs[self.worst_seed]

    def table(self) -> str:
        """One line per seed: level, members above τ, AUC, on-margin images leaked."""
        lines = [f"{'seed':>6s} {'verdict':>13s} {'above tau':>12s} {'p':>8s} {'AUC':>6s} {'p':>8s} {'on-margin':>10s}"]
        for s, r in self.runs.items():
            a, v, ml = r.evaluation.attack, r.verdict, r.evaluation.margin_leakage
            above = f"{a.n_leaked}/{r.evaluation.settings['n_train']}"
            margin = f"{ml['leaked']['attack']}/{ml['n_on_margin']}" if ml else "-"
            lines.append(f"{s:>6d} {v['level']:>13s} {above:>12s} {format_p(v['p_above_tau']):>8s} {a.auc:>6.3f} "
                         f"{format_p(v['p_auc']):>8s} {margin:>10s}")
        return "\n".join(lines) + f"\nworst: seed {self.worst_seed} ({self.worst.verdict['level']})"


def audit_seeds(model: LoadedModel | str | Path, seeds: list[int], *, out: str | Path, device: str = "auto",
                model_options: dict[str, Any] | None = None, **options: Any) -> SeedsAudit:
    """:func:`audit` once per seed (into ``out/seed-S/``), and a summary report in ``out`` whose headline is the worst
    verdict: one run is one draw of the attack's random start, and on the digits reference the share of members
    above τ ranges 21–26% over seeds 0–9, so a release decision should rest on several.

    Args:
        seeds: distinct seeds, e.g. ``[0, 1, 2]``.
        out, device, model_options: as :func:`audit` (each seed loads the model as a single audit does, so its
            report lists the same warnings).
        options: :func:`audit`'s other keywords (train, heldout, config, m, resume: only seeds whose folder an
            interrupted call left are resumed).

    Returns:
        A :class:`SeedsAudit`; ``out/report.html`` is the page to read.
    """
    if not isinstance(out, str | Path):
        raise ConfigError(f"out is {out!r}", "give the folder for the report, e.g. out='runs/audit'")
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ConfigError(f"seeds {seeds!r}", "give distinct non-negative integer seeds, e.g. 0,1,2")
    if "seed" in options:
        raise ConfigError("seed given with seeds", "give one of them")
    out = Path(out)
    resume = bool(options.pop("resume", False))
    runs = {}
    for s in seeds:
        try:
            runs[s] = audit(model, out=out / f"seed-{s}", seed=s, device=device, model_options=model_options,
                            resume=resume and (out / f"seed-{s}" / "kkt").exists(), **options)
        except NetinvError as e:
            raise type(e)(f"seed {s}: {e.problem}", e.fix) from None  # which seed (the others' reports are kept)
    worst = max(runs, key=lambda s: (LEVELS.index(runs[s].verdict["level"]), runs[s].evaluation.attack.frac_leaked))
    rows = [{"seed": s, "level": r.verdict["level"], "verdict": r.verdict["verdict"],
             "p_above_tau": r.verdict["p_above_tau"], "p_auc": r.verdict["p_auc"], **r.evaluation.attack.summary(),
             "report": str(Path(f"seed-{s}") / "report.html")} for s, r in runs.items()]
    report = render_seeds("netinv privacy audit over several seeds", rows, worst, out)
    return SeedsAudit(runs, worst, report)
