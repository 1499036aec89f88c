"""The leakage evaluation of a reconstruction attack: Haim et al. 2022's per-image score (NCC matching, min-max
scaling, kornia SSIM with a 3×3 window) and, always beside it, netinv's member vs non-member figures and null
baselines (uniform noise, real held-out images as candidates). Protocol: shared/reference/evaluation.md.

Each reference image (the n training images = members, and held-out non-members of the same task) is matched to its
nearest candidate by NCC; the candidate is min-max scaled to [0, 1] and scored by SSIM against the reference. A
candidate set leaks the training set only when training images score above the held-out ones: τ = 95th percentile
of the held-out scores, "leaked" = training images above τ, AUC of training vs held-out scores (0.5 = nothing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import ConfigError, DataError, ModelError
from .._utils.checkpoint import write_json
from .._utils.shapes import same_layout
from ..data import Dataset
from ..models.loaded import LoadedModel
from .functional import (
    auto_downsample,
    class_assignment,
    constant_channels,
    leakage_threshold,
    leaked,
    margins,
    membership_auc,
    minmax_scale,
    nearest_ncc,
    on_margin,
    per_class_mean_pairwise_distance,
    ssim,
)


@dataclass(frozen=True)
class EvaluationConfig:
    """Constants of the score and the figures (sources in comments)."""

    window_size: int = 3  # Haim et al.'s kornia ssim(window_size=3)
    sigma: float = 1.5  # kornia's fixed Gaussian σ
    k1: float = 0.01  # SSIM C1 = (k1·L)², Wang et al. 2004 / kornia
    k2: float = 0.03  # SSIM C2 = (k2·L)², Wang et al. 2004 / kornia
    ssim_threshold: float = 0.4  # Haim et al.: "count of reconstructions with SSIM > 0.4"
    quantile: float = 0.95  # τ = 95th percentile of held-out scores (evaluation protocol)
    downsample: bool | None = None  # None: ×2 bicubic before matching only for 32×32 colour (Haim et al.)
    batch_size: int = 4096  # inputs per model forward pass
    margin_tol: float = 0.1  # "on the margin": within 10% of the smallest margin (ours; Haim et al. give no number)


@dataclass
class CandidateFigures:
    """The figures of one candidate set (the attack's or a null baseline's).

    Attributes:
        name: ``attack``, ``noise``, ``real_heldout`` or ``mean_image``.
        n_candidates: candidates in the set.
        train_ssim: per training image, the SSIM to its NCC-nearest candidate (n_train, float64: the values τ and
            the counts were computed from).
        train_match: per training image, the index of that candidate in the set (n_train).
        heldout_ssim / heldout_match: the same for the held-out non-members used for τ.
        best_mean_ssim: Haim's mean SSIM of the ``n_best`` best-matched training images.
        n_above_threshold: Haim's count of training images with SSIM > ``ssim_threshold``.
        tau: the ``quantile`` of ``heldout_ssim``.
        n_leaked / frac_leaked: training images with SSIM > tau.
        auc: training vs held-out SSIM (Mann-Whitney, ties ½).
        n_distinct_leaked: distinct candidates that are the match of a leaked training image (below ``n_leaked``
            when one candidate stands for several near-identical training images).
    """

    name: str
    n_candidates: int
    train_ssim: torch.Tensor
    train_match: torch.Tensor
    heldout_ssim: torch.Tensor
    heldout_match: torch.Tensor
    best_mean_ssim: float
    n_above_threshold: int
    tau: float
    n_leaked: int
    frac_leaked: float
    auc: float
    n_distinct_leaked: int

    def summary(self) -> dict[str, Any]:
        """The scalar figures."""
        return {k: getattr(self, k) for k in ("name", "n_candidates", "best_mean_ssim", "n_above_threshold", "tau",
                                              "n_leaked", "frac_leaked", "n_distinct_leaked", "auc")}

    def to_dict(self) -> dict[str, Any]:
        """Scalars plus the per-image scores and matches."""
        return {**self.summary(), **{k: getattr(self, k).tolist() for k in ("train_ssim", "train_match",
                                                                              "heldout_ssim", "heldout_match")}}


@dataclass
class Evaluation:
    """The attack's figures next to its two null baselines, per-image margins and (with labels) class figures.

    Attributes:
        attack / noise / real_heldout: :class:`CandidateFigures` of the attack's candidates, of uniform noise in the
            model's input range, and of real held-out images used as candidates (disjoint from the τ images).
        train_margin: y·Φ(x) per training image (binary (2y−1)·logit; multiclass logit_y − max_{k≠y}), None
            without a model.
        conditioning: with candidate labels: fraction of candidates the model assigns to their label and mean
            confidence (with a model), and per-class diversity of candidates vs real training images of that class
            in pixels and (with a model) in the classifier's penultimate features; None otherwise.
        settings: seed, sizes, held-out split indices, noise range and the :class:`EvaluationConfig`.
        figures: name -> path of each PNG written.
        margin_leakage: with a model: the training images on the margin (:func:`~netinv.metrics.on_margin`,
            ``config.margin_tol``) and how many of them each candidate set leaks (Haim et al., Figure 4: the
            images on the margin are the ones a KKT attack recovers); None without a model.
        mean_image: with a model that has a mean image (not constant): the figures of that image alone as the only
            candidate. The mean of the members ships with the model and the attack starts from it, so what it
            scores is not the weights' doing (ours; the protocol has no such row). None otherwise.
    """

    attack: CandidateFigures
    noise: CandidateFigures
    real_heldout: CandidateFigures
    train_margin: torch.Tensor | None
    conditioning: dict[str, Any] | None
    settings: dict[str, Any]
    figures: dict[str, str] = field(default_factory=dict)
    margin_leakage: dict[str, Any] | None = None
    mean_image: CandidateFigures | None = None

    @property
    def sets(self) -> tuple[CandidateFigures, ...]:
        """The attack's figures, then each null baseline's."""
        return self.attack, self.noise, self.real_heldout, *((self.mean_image,) if self.mean_image else ())

    def verdict(self) -> dict[str, Any]:
        """The audit's verdict on these figures (:func:`netinv.report.render.assess`): ``level``, ``p_above_tau``,
        ``p_auc`` and the ``verdict`` sentence."""
        from ..report.render import assess

        return assess({f.name: f.summary() for f in self.sets}, self.settings["n_train"], self.margin_leakage,
                      self.settings.get("n_heldout_tau"))

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (written as ``evaluation.json``)."""
        return {"summary": {f.name: f.summary() for f in self.sets}, "verdict": self.verdict(),
                **{f.name: f.to_dict() for f in self.sets},
                "train_margin": self.train_margin.tolist() if self.train_margin is not None else None,
                "margin_leakage": self.margin_leakage, "conditioning": self.conditioning, "settings": self.settings,
                "figures": {k: Path(v).name for k, v in self.figures.items()}}  # beside evaluation.json

    def table(self) -> str:
        """A compact text table: attack vs noise vs real held-out candidates."""
        n = self.settings["n_train"]
        thr, q, nb = (self.settings["config"][k] for k in ("ssim_threshold", "quantile", "n_best"))
        rows = [("candidates", [str(f.n_candidates) for f in self.sets]),
                (f"SSIM > {thr:g} (Haim)", [f"{f.n_above_threshold}/{n}" for f in self.sets]),
                (f"mean SSIM, best {nb}", [f"{f.best_mean_ssim:.3f}" for f in self.sets]),
                (f"tau ({q:.0%} of held-out)", [f"{f.tau:.3f}" for f in self.sets]),
                ("leaked (SSIM > tau)", [f"{f.n_leaked}/{n} ({f.frac_leaked:.0%})" for f in self.sets]),
                ("candidates behind leaks", [str(f.n_distinct_leaked) for f in self.sets]),
                ("member vs non-member AUC", [f"{f.auc:.3f}" for f in self.sets])]
        ml = self.margin_leakage
        if ml is not None:
            rows.append((f"on-margin leaked (of {ml['n_on_margin']})",
                         [f"{ml['leaked'][f.name]}/{ml['n_on_margin']}" for f in self.sets]))
        heads = {"attack": "attack", "noise": "noise", "real_heldout": "real held-out", "mean_image": "mean image"}
        lines = [f"{'':26s}" + "".join(f"{heads[f.name]:>16s}" for f in self.sets)]
        lines += [f"{name:26s}" + "".join(f"{v:>16s}" for v in vals) for name, vals in rows]
        n_real = self.settings.get("n_heldout_candidates")
        lines.append(f"{n} training images, {self.settings['n_heldout_tau']} held-out images for tau"
                     + (f" (another {n_real} are the real held-out candidates)" if n_real else "")
                     + f", seed {self.settings['seed']}")
        c = self.conditioning
        if c and "assigned_fraction" in c:
            lines.append(f"candidates assigned to their label: {c['assigned_fraction']:.1%}, "
                         f"mean confidence {c['mean_confidence']:.3f}")
        return "\n".join(lines)


def model_fit(model: LoadedModel, train: Dataset, heldout: Dataset, *, stacklevel: int = 2) -> tuple[float, float]:
    """The model's accuracy on the members and on the non-members (rounded to 4 places), with a warning when it
    classifies the members poorly (below the non-members by 0.2, below 0.5, or at the majority-class share: flipped
    or renumbered labels, another mean or input scale, or not its training set) or misclassifies some of them (the
    KKT theory assumes zero training error)."""
    acc_train = round(model.accuracy(model.from_unit(train.x), train.y), 4)
    acc_heldout = round(model.accuracy(model.from_unit(heldout.x), heldout.y), 4)
    chance = float(torch.bincount(train.y).max()) / len(train.y) if len(train.y) else 0.0  # the majority class
    if acc_train < acc_heldout - 0.2 or acc_train < 0.5 or acc_train <= chance:  # a model fits its training set,
        # at least better than unseen data and than guessing (both sets' labels flipped or renumbered together
        # pass the first test; a wrong mean or input scale gives chance)
        warnings.warn(f"the model classifies the members poorly (accuracy {acc_train:.2f}; non-members "
                      f"{acc_heldout:.2f}; the largest class is {chance:.2f} of the members): are the members its "
                      "training set, are the labels of both sets its own class indices (not flipped or renumbered), "
                      "and are --mean and --input-range those it was trained with?", UserWarning,
                      stacklevel=stacklevel + 1)
    elif acc_train < 1.0:
        warnings.warn(f"the model misclassifies {round((1 - acc_train) * len(train))} of the {len(train)} members: the "
                      "KKT attack assumes a model trained to zero training error, so expect less leakage than from a "
                      "model that fits every member", UserWarning, stacklevel=stacklevel + 1)
    return acc_train, acc_heldout


def evaluate(candidates: torch.Tensor, train: Dataset | str | Path, heldout: Dataset | str | Path, *,
             model: LoadedModel | str | Path | None = None,
             candidate_labels: torch.Tensor | None = None, seed: int = 0, out: str | Path | None = None,
             n_best: int = 10, config: EvaluationConfig = EvaluationConfig(), check_fit: bool = True) -> Evaluation:
    """Score a candidate set against the training set, beside the noise and real-held-out null baselines.

    Args:
        candidates: M×C×H×W (or M×D with D = C·H·W) candidates in DATA space (mean added back, not clipped, not
            rescaled); each matched candidate is min-max scaled to [0, 1] here, as the protocol says.
        train: the training images (members), in [0, 1]: a data set, or an npz file / class folder read with the
            model's own class indices (:func:`netinv.data.load_model_data`).
        heldout: held-out images of the same task (non-members), the same kinds. Images also in ``train`` are left
            out with a warning (:func:`drop_members`). Split by ``seed`` into up to M images used as the real-data
            candidates and the rest used for τ (the two parts are disjoint).
        model: the attacked model (or anything :func:`netinv.load_model` reads): gives the margins, the noise range
            and the class figures. Default: none.
        candidate_labels: M class indices the candidates were made for (±1 of a binary task are read as 0/1).
        seed: draws the noise candidates and the held-out split.
        out: folder for ``evaluation.json``, ``best_pairs.png`` and ``ssim_vs_margin.png`` (with a model).
        n_best: how many best-matched training images Haim's mean SSIM takes. Default: 10 (Haim et al.).
        config: score constants, see :class:`EvaluationConfig`.
        check_fit: with a model, warn when it classifies the members poorly or misclassifies some
            (:func:`model_fit`); the audit checks before its attack and passes False.

    Returns:
        An :class:`Evaluation`.

    Raises:
        DataError: candidates that are not images of the training images' shape or not finite, held-out sets with
            fewer than two images, mismatched shapes, bad labels.
        ModelError: a model whose input shape does not fit the data.
    """
    from ..data import load_model_data
    from ..models.loading import load_model

    train, heldout = load_model_data(train), load_model_data(heldout)
    if model is not None and not isinstance(model, LoadedModel):
        model = load_model(model)
    if model is not None and model.source.get("format") != "netinv" and train.source.get("label_map"):
        warnings.warn(f"the training labels were renumbered when loaded ({train.source['label_map']}); a given "
                      "model's members need its own class indices: load them with netinv.load_model_data(path) "
                      "(load_data(..., relabel=False))", UserWarning, stacklevel=2)
    shape = check_sets(train, heldout)
    heldout = drop_members(train, heldout)
    cands = _as_images(candidates, shape, "candidates")
    m = cands.shape[0]
    if n_best < 1:
        raise ConfigError(f"n_best={n_best}", "use n_best >= 1 (Haim et al. use 10)")
    if model is not None and int(np.prod(model.input_shape)) != int(np.prod(shape)):
        raise ModelError(f"the model takes inputs {tuple(model.input_shape)}, the data has {shape}",
                         "evaluate with the training set of this model")
    if model is not None and check_fit:
        model_fit(model, train, heldout, stacklevel=2)
    labels = _labels(candidate_labels, m, model, train) if candidate_labels is not None else None
    n_flat = int(constant_channels(cands).all(1).sum())
    if n_flat:
        warnings.warn(f"{n_flat} of the {m} candidates are constant images: they carry no pattern, so they are never "
                      "matched" + (" (all are, so they are matched anyway)" if n_flat == m else ""),
                      UserWarning, stacklevel=2)

    # held-out split: a real-candidate part (same count as the attack's, at most half) and the τ part
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(heldout), generator=gen)
    n_real = min(m, len(heldout) // 2)
    real_idx, tau_idx = torch.sort(perm[:n_real]).values, torch.sort(perm[n_real:]).values
    lo, hi = model.input_range if model is not None else (0.0, 1.0)
    noise = lo + (hi - lo) * torch.rand((m, *shape), generator=gen)

    refs = torch.cat([train.x, heldout.x[tau_idx]])  # (n_train + n_tau, C, H, W) in [0, 1]
    sets = {"attack": cands, "noise": noise, "real_heldout": heldout.x[real_idx]}
    mean_img = model.mean.detach().cpu().reshape(1, *shape) if model is not None and model.mean is not None else None
    if mean_img is not None and not bool(constant_channels(mean_img).all()):
        sets["mean_image"] = mean_img  # what the released mean of the members gives alone
    figs = {name: _figures(name, c, refs, len(train), n_best, config) for name, c in sets.items()}

    margin = None
    if model is not None:
        margin = margins(_logits(model, model.from_unit(train.x), config.batch_size), train.y)
    cond = _conditioning(cands, labels, train, model, config.batch_size) if labels is not None else None
    downsample = auto_downsample(shape) if config.downsample is None else config.downsample  # as applied
    settings = {"seed": seed, "downsample": downsample, "n_train": len(train), "n_candidates": m,
                "n_heldout": len(heldout),
                "heldout_members_left_out": int(heldout.source.get("dropped_members", 0)),
                "n_heldout_tau": len(tau_idx), "n_heldout_candidates": n_real, "noise_range": [lo, hi],
                "heldout_tau_indices": tau_idx.tolist(), "heldout_candidate_indices": real_idx.tolist(),
                "train_indices": train.indices, "config": {**dataclasses.asdict(config), "n_best": n_best}}
    ev = Evaluation(figs["attack"], figs["noise"], figs["real_heldout"], margin, cond, settings,
                    margin_leakage=_margin_leakage(margin, figs, config.margin_tol) if margin is not None else None,
                    mean_image=figs.get("mean_image"))
    if out is not None:
        _write(ev, cands, train, Path(out))
    return ev


# ----------------------------------------------------------------------------------------------------------------
_CHUNK = 256  # references scored at a time (32×32×3: 0.44 GiB peak against 1.7 at 1 024, no slower; evaluate_scale.py)


def _figures(name: str, cands: torch.Tensor, refs: torch.Tensor, n_train: int, n_best: int,
             cfg: EvaluationConfig) -> CandidateFigures:
    """Match every reference to its NCC-nearest candidate, min-max scale it, score by SSIM, then the figures."""
    match, _ = nearest_ncc(refs, cands, downsample=cfg.downsample)
    scores = torch.cat([  # in chunks of references: the SSIM's float64 moment maps are ~12× the images' size
        ssim(minmax_scale(cands[match[i:i + _CHUNK]].to(torch.float64)),  # matched candidates in [0, 1]
             refs[i:i + _CHUNK].to(torch.float64), window_size=cfg.window_size, sigma=cfg.sigma, k1=cfg.k1,
             k2=cfg.k2, data_range=1.0)
        for i in range(0, len(refs), _CHUNK)])
    s_tr, s_ho = scores[:n_train], scores[n_train:]
    tau = leakage_threshold(s_ho, cfg.quantile)
    k, frac = leaked(s_tr, tau)
    best = torch.sort(s_tr, descending=True).values[:n_best]
    distinct = int(match[:n_train][s_tr > tau].unique().numel())
    return CandidateFigures(name, int(cands.shape[0]), s_tr, match[:n_train], s_ho, match[n_train:],
                            float(best.mean()), int((s_tr > cfg.ssim_threshold).sum()), tau, k, frac,
                            membership_auc(s_tr, s_ho), distinct)


def _margin_leakage(margin: torch.Tensor, figs: dict[str, CandidateFigures], rel_tol: float) -> dict[str, Any]:
    """The training images on the margin and, per candidate set, how many of them score above its τ."""
    mask = on_margin(margin.cpu(), rel_tol)
    return {"rel_tol": rel_tol, "n_on_margin": int(mask.sum()), "indices": mask.nonzero()[:, 0].tolist(),
            "leaked": {name: int(((f.train_ssim > f.tau) & mask).sum()) for name, f in figs.items()}}


def check_sets(train: Dataset, heldout: Dataset) -> tuple[int, ...]:
    """The image shape C×H×W of ``train`` and ``heldout``, or a one-line error when the evaluation cannot score them.

    Raises:
        DataError: tabular rows, different shapes, an empty training set or fewer than two held-out images.
    """
    shape = tuple(train.input_shape)
    if len(shape) != 3:
        raise DataError(f"the evaluation scores images (C×H×W), the training inputs are {shape}",
                        "evaluate image data (tabular rows have no SSIM); for a model on flattened images, store x "
                        "as N×C×H×W (it is reshaped to the model's inputs)")
    if tuple(heldout.input_shape) != shape:
        raise DataError(f"held-out inputs {tuple(heldout.input_shape)} differ from training inputs {shape}",
                        "give held-out images of the same task")
    if len(train) == 0 or len(heldout) < 2:
        raise DataError(f"{len(train)} training and {len(heldout)} held-out images",
                        "give at least one training image and two held-out images (more make τ meaningful)")
    return shape


def drop_members(train: Dataset, heldout: Dataset) -> Dataset:
    """``heldout`` without the images that are also in ``train`` (identical values): a member among the
    non-members would count as a non-member that leaks, raising τ and lowering the AUC. Warns with the count.

    Raises:
        DataError: fewer than two held-out images are left (e.g. the same file given twice).
    """
    def rows(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().cpu().to(torch.float32).reshape(len(x), -1).numpy())

    def digest(r: np.ndarray) -> bytes:
        return hashlib.blake2b(r, digest_size=16).digest()

    tr, ho = rows(train.x), rows(heldout.x)
    members: dict[bytes, int] = {}  # 16-byte digests, not every member's bytes (0.8 GB for 50 000 CIFAR images)
    for i, r in enumerate(tr):
        members.setdefault(digest(r), i)
    # a digest match is confirmed on the values themselves
    keep = [i for i, r in enumerate(ho) if (j := members.get(digest(r))) is None or not np.array_equal(tr[j], r)]
    n_drop = len(heldout) - len(keep)
    if n_drop == 0:
        return heldout
    if len(keep) < 2:
        raise DataError(f"{n_drop} of the {len(heldout)} held-out images are also training images",
                        "give non-members as the held-out set: images of the same task the model never trained on")
    warnings.warn(f"{n_drop} of the {len(heldout)} held-out images are also training images: they are left out of "
                  "the non-members (τ, AUC and the real-image baseline)", UserWarning, stacklevel=2)
    return heldout.subset(keep, dropped_members=n_drop)


def _as_images(x: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu()
    x = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)  # float64 kept: matching runs in it
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{what} have shape {tuple(x.shape)}", f"give M×{'×'.join(map(str, shape))} {what}")
    if tuple(x.shape[1:]) != shape:
        if x[0].numel() != int(np.prod(shape)):
            raise DataError(f"{what} of shape {tuple(x.shape[1:])} do not fit images of shape {shape}",
                            "evaluate candidates made for this model and data set")
        if not same_layout(x.shape[1:], shape):
            raise DataError(f"{what} of shape {tuple(x.shape[1:])} hold the values of images {shape} in another "
                            "order", f"save them as M×{'×'.join(map(str, shape))} (e.g. channels first)")
        x = x.reshape(x.shape[0], *shape)
    if not torch.isfinite(x).all():
        raise DataError(f"{int((~torch.isfinite(x)).sum())} values of the {what} are NaN or inf",
                        "drop the diverged candidates (or rerun the attack) before evaluating")
    return x


def _labels(labels: Any, m: int, model: LoadedModel | None, train: Dataset) -> torch.Tensor:
    y = (labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))).flatten()
    if y.numel() != m:
        raise DataError(f"{y.numel()} candidate labels for {m} candidates", "give one label per candidate")
    binary = (model.num_classes if model is not None else train.num_classes) == 2
    if binary and bool((y < 0).any()):
        y = (y > 0)  # ±1 labels of the KKT attack -> classes 0 / 1
    y = y.to(torch.int64)
    k = model.num_classes if model is not None else train.num_classes
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise DataError(f"candidate labels outside 0..{k - 1}", "give class indices (or ±1 for a binary model)")
    return y


def _batched(fn: Any, x: torch.Tensor, model: LoadedModel, batch_size: int) -> torch.Tensor:
    xs = x.reshape(x.shape[0], *model.input_shape)
    with torch.no_grad():
        return torch.cat([fn(xs[i:i + batch_size].to(model.device, torch.float32)).detach().float().cpu()
                          for i in range(0, xs.shape[0], batch_size)])


def _logits(model: LoadedModel, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return _batched(model.logits, x, model, batch_size)


def _features(model: LoadedModel, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(features, logits, where from), from one pass of the model: the classifier's penultimate features
    (:class:`netinv.models.features.Features`: the input of the last linear layer called, or the logits where hooks
    cannot reach)."""
    from ..models.features import Features

    feats = Features(model)
    try:
        both = _batched(lambda xb: torch.cat(feats(xb), 1), x, model, batch_size)
    finally:
        feats.close()
    k = model.num_outputs
    return both[:, :-k], both[:, -k:], feats.layer


def _conditioning(cands: torch.Tensor, y: torch.Tensor, train: Dataset, model: LoadedModel | None,
                  batch_size: int) -> dict[str, Any]:
    """Class figures of labelled candidates (generator inversion): assignment, confidence, diversity vs real data."""
    classes = torch.unique(y).tolist()
    real = {c: train.x[train.y == c] for c in classes}
    real_x = torch.cat([real[c] for c in classes])
    real_y = torch.cat([torch.full((len(real[c]),), c, dtype=torch.int64) for c in classes])
    out: dict[str, Any] = {"classes": classes, "counts": {c: int((y == c).sum()) for c in classes}}

    def div(a: torch.Tensor, b: torch.Tensor) -> dict[str, dict[int, float]]:
        return {"candidates": per_class_mean_pairwise_distance(a, y),
                "real": per_class_mean_pairwise_distance(b, real_y)}

    # pixel distances on the data sets' [0, 1] scale; the model sees the real images in its own range
    out["diversity_pixels"] = div(model.to_unit(cands) if model is not None else cands, real_x)
    if model is not None:
        f_c, z_c, where = _features(model, cands, batch_size)
        out.update(class_assignment(z_c, y))
        f_r, _, _ = _features(model, model.from_unit(real_x), batch_size)
        out["diversity_features"] = {**div(f_c, f_r), "layer": where}
    return out


def _write(ev: Evaluation, cands: torch.Tensor, train: Dataset, out: Path) -> None:
    from ..report.figures import save_image_grid, save_scatter

    out.mkdir(parents=True, exist_ok=True)
    a = ev.attack
    best = torch.argsort(a.train_ssim, descending=True)[: ev.settings["config"]["n_best"]]
    recon = minmax_scale(cands[a.train_match[best]])
    ev.figures["best_pairs"] = str(save_image_grid(
        [recon, train.x[best]], out / "best_pairs.png", row_labels=["reconstruction", "training"],
        col_labels=[f"{float(s):.2f}" for s in a.train_ssim[best]],
        title=f"best pairs (SSIM), best first; leaked above τ = {a.tau:.3f}",
        meta={"seed": ev.settings["seed"], "record": "evaluation.json"}))
    if ev.train_margin is not None:
        names = {"attack": "attack", "noise": "uniform noise", "real_heldout": "real non-member images",
                 "mean_image": "mean image alone"}  # the candidate sets, as the table names them
        series = {names[f.name]: (ev.train_margin.tolist(), f.train_ssim.tolist()) for f in ev.sets}
        ml = ev.margin_leakage or {}
        fit = ev.train_margin[ev.train_margin > 0]
        band = (float(fit.min()), float(fit.min()) * (1 + ml["rel_tol"]), "on the margin") \
            if len(fit) and "rel_tol" in ml else None
        ev.figures["ssim_vs_margin"] = str(save_scatter(
            series, out / "ssim_vs_margin.png", xlabel="margin y·Φ(x) of the training image",
            ylabel="SSIM to nearest candidate", title="training images: score vs margin (Haim et al. Fig. 4)",
            thresholds={names[f.name]: f.tau for f in ev.sets}, band=band,
            meta={"seed": ev.settings["seed"], "record": "evaluation.json"}))
    write_json(out / "evaluation.json", ev.to_dict())
