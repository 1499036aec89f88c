"""``netinv invert MODEL --out DIR``: class-conditional generator inversion (Suhail & Sethi 2024)."""

from __future__ import annotations

from pathlib import Path

import typer

from .._utils.config import merge_config
from ..attacks.generator import GeneratorConfig, GeneratorInversion
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
    model_kwargs,
    parse_classes,
)

ConfigOpt = config_opt(GeneratorConfig)

_G = GeneratorConfig()  # the defaults the help names


def invert(
    model: ModelArg,
    out: OutOpt = Path("runs/invert"),
    classes: str | None = typer.Option(None, help="invert only these class indices, e.g. 0,3 (default: all)"),
    conditioning: str | None = typer.Option(None, help="vector+matrix (default), soft, hot, matrix, embedding, "
                                                       "hot+matrix"),
    n: int | None = typer.Option(None, "--n", help=f"samples to draw (default {_G.samples_per_class} per class; "
                                                   "samples_per_class in --config)"),
    steps: int | None = typer.Option(None, help=f"generator training steps (default {_G.steps})"),
    batch_size: int | None = typer.Option(None, help=f"generated samples per step (default {_G.batch_size})"),
    lr: float | None = typer.Option(None, help=f"Adam step of the generator (default {_G.lr:g})"),
    latent_dim: int | None = typer.Option(None, help=f"size of the noise vector z (default {_G.latent_dim})"),
    width: int | None = typer.Option(None, help=f"channels of the last up-sampling block (default {_G.width})"),
    dropout: float | None = typer.Option(None, help="dropout in the up-sampling path (active while generating; "
                                                    f"default {_G.dropout:g})"),
    feature_layer: str | None = typer.Option(None, help="auto (input of the last linear layer), logits, or a "
                                                        "submodule name [:input]"),
    kl_weight: float | None = typer.Option(None, help=f"α, KL to the soft target (default {_G.kl_weight:g})"),
    ce_weight: float | None = typer.Option(None, help=f"β, cross-entropy to the label (default {_G.ce_weight:g})"),
    cosine_weight: float | None = typer.Option(None, help="γ, mean feature cosine similarity (default "
                                                          f"{_G.cosine_weight:g})"),
    ortho_weight: float | None = typer.Option(None, help=f"δ, feature Gram matrix vs identity (default "
                                                         f"{_G.ortho_weight:g})"),
    stop_at: float | None = typer.Option(None, help="stop once this fraction of a monitor batch is assigned to its "
                                                    "class"),
    config: ConfigOpt = None,
    weights: WeightsOpt = None,
    input_shape: InputShapeOpt = None,
    input_range: InputRangeOpt = None,
    mean: MeanOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    resume: ResumeOpt = False,
) -> None:
    """Train a conditioned generator against a frozen classifier; write samples, grids and the generator.

    Example: netinv invert runs/cnn --out runs/invert --classes 0,3  (runs/cnn: the README tour's 6-class CNN)
    """
    cfg = merge_config(GeneratorConfig(), {
        "classes": parse_classes(classes), "conditioning": conditioning, "steps": steps, "batch_size": batch_size,
        "lr": lr, "latent_dim": latent_dim, "width": width, "dropout": dropout, "feature_layer": feature_layer,
        "kl_weight": kl_weight, "ce_weight": ce_weight, "cosine_weight": cosine_weight,
        "ortho_weight": ortho_weight, "stop_at": stop_at}, yaml_file=config)
    victim = load_model(model, **model_kwargs(weights, input_shape, input_range, mean, device))
    cands = GeneratorInversion(victim, cfg).invert(n, seed=seed, out=out, resume=resume)
    info = cands.info
    grids = ", grid.png" if (out / "grid.png").is_file() else ""  # flat inputs have no picture
    typer.echo(f"{len(cands)} samples of {len(set(cands.y.tolist()))} classes after {info['steps_run']} steps "
               f"({info['wall_time_s']:.1f}s): {100 * info['assigned_fraction']:.1f}% assigned to their class, "
               f"mean confidence {info['mean_confidence']:.3f} -> {out} (samples.npz{grids})")
