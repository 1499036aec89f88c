"""``netinv reconstruct tldr MODEL --out DIR``: training-like data reconstruction (Suhail & Sethi 2024, arXiv
2410.16884). The command checks its flags, loads the model and makes one :class:`~netinv.attacks.tldr.TLDR` call."""

from __future__ import annotations

from pathlib import Path

import typer

from .._utils.config import merge_config
from ..attacks.tldr import TLDR, TLDRConfig
from ..models.loading import load_model
from ._options import (
    DeviceOpt,
    InputRangeOpt,
    InputShapeOpt,
    MeanOpt,
    ModelArg,
    OutOpt,
    ResumeOpt,
    SeedOpt,
    WeightsOpt,
    config_opt,
    evaluate_hint,
    model_kwargs,
    parse_classes,
)

ConfigOpt = config_opt(TLDRConfig)

_T = TLDRConfig()  # the defaults the help names


def _h(text: str, field: str) -> str:
    return f"{text} (default {getattr(_T, field):g})"


def tldr(
    model: ModelArg,
    out: OutOpt = Path("runs/tldr"),
    n: int | None = typer.Option(None, "--n", help="candidates to return (default: samples_per_class × classes)"),
    classes: str | None = typer.Option(None, help="reconstruct only these class indices, e.g. 0,3 (default: all)"),
    conditioning: str | None = typer.Option(None, help="hot (default, the paper's), hot+matrix, soft, "
                                                       "vector+matrix, matrix, embedding"),
    steps: int | None = typer.Option(None, help=_h("generator training steps", "steps")),
    batch_size: int | None = typer.Option(None, help=_h("generated samples per step", "batch_size")),
    lr: float | None = typer.Option(None, help=_h("Adam step of the generator", "lr")),
    kl_weight: float | None = typer.Option(None, help=_h("α: KL to the one-hot target", "kl_weight")),
    kl_pert_weight: float | None = typer.Option(None, help=_h("α′: KL on perturbed samples", "kl_pert_weight")),
    ce_weight: float | None = typer.Option(None, help=_h("β: cross-entropy to the label", "ce_weight")),
    ce_pert_weight: float | None = typer.Option(None, help=_h("β′: CE on perturbed samples", "ce_pert_weight")),
    cosine_weight: float | None = typer.Option(None, help=_h("γ: feature cosine similarity", "cosine_weight")),
    ortho_weight: float | None = typer.Option(None, help=_h("δ: feature orthogonality", "ortho_weight")),
    tv_weight: float | None = typer.Option(None, help=_h("η₁: total variation", "tv_weight")),
    pixel_weight: float | None = typer.Option(None, help=_h("η₂: pixel range, --unbounded-output", "pixel_weight")),
    grad_weight: float | None = typer.Option(None, help=_h("η₃: classifier parameter-gradient norm", "grad_weight")),
    grad_mode: str | None = typer.Option(None, help="per_sample (default) or batch (gradient of the batch mean)"),
    noise_std: float | None = typer.Option(None, help=_h("perturbation σ, share of the range", "noise_std")),
    max_shift: int | None = typer.Option(None, help=_h("perturbation: largest random shift in pixels", "max_shift")),
    unbounded_output: bool = typer.Option(False, "--unbounded-output", help="raw generator output kept in range "
                                                                             "by the pixel penalty (no sigmoid)"),
    oversample: int | None = typer.Option(None, help="draw this many times n and keep the best-ranked"),
    rank_by: str | None = typer.Option(None, help="ranking score: robustness (default), confidence, grad_norm"),
    feature_layer: str | None = typer.Option(None, help="auto (input of the last linear layer), logits, or a "
                                                        "submodule name [:input]"),
    config: ConfigOpt = None,
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    input_range: InputRangeOpt = None,
    mean: MeanOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    resume: ResumeOpt = False,
) -> None:
    """Train a generator towards training-like samples of a frozen classifier; write candidates.npz + run.json.

    Example: netinv reconstruct tldr runs/cnn --out runs/tldr  (then: netinv evaluate runs/tldr)
    """
    cfg = merge_config(TLDRConfig(), {
        "classes": parse_classes(classes), "conditioning": conditioning, "steps": steps, "batch_size": batch_size,
        "lr": lr, "kl_weight": kl_weight, "kl_pert_weight": kl_pert_weight, "ce_weight": ce_weight,
        "ce_pert_weight": ce_pert_weight, "cosine_weight": cosine_weight, "ortho_weight": ortho_weight,
        "tv_weight": tv_weight, "pixel_weight": pixel_weight, "grad_weight": grad_weight, "grad_mode": grad_mode,
        "noise_std": noise_std, "max_shift": max_shift, "bounded_output": False if unbounded_output else None,
        "oversample": oversample, "rank_by": rank_by, "feature_layer": feature_layer}, yaml_file=config)
    victim = load_model(model, **model_kwargs(weights, input_shape, input_range, mean, device))
    cands = TLDR(victim, cfg).invert(n, seed=seed, out=out, resume=resume)
    info = cands.info
    grids = ", grid.png" if (out / "grid.png").is_file() else ""  # flat inputs have no picture
    typer.echo(f"{len(cands)} candidates of {len(set(cands.y.tolist()))} classes after {info['steps_run']} steps "
               f"({info['wall_time_s']:.1f}s): {100 * info['assigned_fraction']:.1f}% assigned to their class, "
               f"mean confidence {info['mean_confidence']:.3f} -> {out} (candidates.npz{grids}); "
               f"{evaluate_hint(victim, out)}")
