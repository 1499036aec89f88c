"""``netinv demo``: the main job on the embedded digits data (what ``make demo`` runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..demo import run_demo
from ._options import DeviceOpt, OutOpt, SeedOpt


def demo(out: OutOpt = Path("runs/demo"), seed: SeedOpt = 0, device: DeviceOpt = "auto") -> None:
    """Train the reference victim on digits parity, reconstruct its training set, report the leakage."""
    res = run_demo(out, seed=seed, device=device)
    m = res.candidates.info
    typer.echo(res.evaluation.table())
    typer.echo(f"attack: {len(res.candidates)} candidates in {m.get('wall_time_s', float('nan')):.0f}s")
    typer.echo(f"report: {res.report['html']}  (also report.md, report.json)")
