"""Benchmark: KKT training-data reconstruction (Haim et al. 2022) on digits, with its null baselines.

Reference victim: digits parity, 50 per class, MLP 64-1000-1000-1 bias-free, small init, zero training error.
Prints and appends to benchmarks/RESULTS.md:
- speed: iterations per second, one iteration against the FLOP floor (multiply-adds of the forward and both backward
  passes counted by torch's FlopCounterMode, divided by the rate of a plain matmul timed in the same run), peak memory;
- leakage with the attacker-side defaults: member vs non-member figures (τ, above τ, AUC) beside uniform-noise and
  real-held-out candidates, Haim's figures;
- trends: n = 5, 10, 25, 100, 250 per class (any nK row), and the reference with weight decay;
- a sweep (netinv.attacks.sweep) pooling the best runs by the attacker-side criterion, and the wall time to reach the
  leakage target (≥ 30 % above τ and AUC ≥ 0.75) with sweeps included.
The victim diagnostic "KKT residual (truth)" fits θ by the true training set's margin gradients (NNLS, λ ≥ 0): it
describes how close training got to a KKT point and is never used by the attack.

Usage: python benchmarks/kkt_digits.py [--rows ref,n5,n10,n25,n100,n250,wd,sweep] [--cache runs/bench-kkt] [--trials 6]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import threading
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from netinv.attacks.kkt import KKTConfig, KKTReconstruction, _Problem
from netinv.attacks.sweep import sweep
from netinv.data import load_data, make_task
from netinv.demo import REFERENCE_ARCH, REFERENCE_OPTIONS, REFERENCE_TRAIN
from netinv.metrics import evaluate
from netinv.models.checkpoint import is_checkpoint
from netinv.models.loading import load_model
from netinv.train import train

ROOT = Path(__file__).resolve().parent
# the reference victim recipe, shared with `make demo` (netinv.demo; docs/kkt.md): small init, full-batch GD with
# a large step to a small loss
VICTIM = {"arch": REFERENCE_ARCH, **REFERENCE_OPTIONS}
TRAIN = REFERENCE_TRAIN
WEIGHT_DECAY = 3e-3  # the "with weight decay" victim (Buzaglo et al.: weight decay helps reconstruction)
WD_EPOCHS = 3000  # with weight decay the loss never reaches target_loss: a fixed budget instead


def victim(cache: Path, n_per_class: int, weight_decay: float = 0.0, device: str = "cpu"):
    """Train (or reload from ``cache``) the victim; returns (model, split, train seconds or None when cached)."""
    split = make_task(load_data("digits"), "parity", n_per_class=n_per_class, seed=0)
    path = cache / f"victim-n{n_per_class}-wd{weight_decay:g}"
    if is_checkpoint(path):
        return load_model(path, device=device), split, None
    t = time.perf_counter()
    cfg = dataclasses.replace(TRAIN, weight_decay=weight_decay, epochs=WD_EPOCHS if weight_decay else TRAIN.epochs)
    model = train(split, VICTIM["arch"], cfg, out=path, device=device, show_progress=False, bias=VICTIM["bias"],
                  init_scale=VICTIM["init_scale"])
    return model, split, time.perf_counter() - t


def truth_fit(model, split) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """The NNLS fit of the KKT equation over the TRUE training set (victim diagnostic only): λ ≥ 0 minimising
    ‖θ − Σ λ_i ∇θ margin_i(x_i)‖, the per-sample gradients (n, |θ|), θ flattened, and the named parameters."""
    import scipy.optimize

    from netinv.attacks.kkt import _per_sample_grads

    prob = _Problem(model, torch.float64, KKTConfig(), 1.0)
    x = model.preprocess(split.train.x.double().to(model.device))
    ys = split.train.y.to(model.device)
    jac = torch.cat([torch.cat([g.flatten(1) for g in _per_sample_grads(prob, x[i:i + 25], ys[i:i + 25])],
                               1) for i in range(0, len(x), 25)])  # (n, |θ|)
    jac = jac.cpu()
    th = torch.cat([p.detach().flatten() for p in prob.plist]).cpu()
    gram = jac @ jac.T
    r = torch.linalg.cholesky(gram + 1e-10 * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)).T
    rhs = torch.linalg.solve_triangular(r.T, (jac @ th)[:, None], upper=False)[:, 0]
    lam = torch.from_numpy(scipy.optimize.nnls(r.numpy(), rhs.numpy(), maxiter=10_000)[0])
    return lam, jac, th, prob.params


def truth_residual(model, split, per_layer: bool = False):
    """min_{λ≥0} ‖θ − Σ λ_i ∇θ margin_i(x_i)‖ / ‖θ‖ over the TRUE training set (victim diagnostic only). With
    ``per_layer`` also {parameter name: ‖residual‖/‖θ_layer‖} at the same λ."""
    lam, jac, th, params = truth_fit(model, split)
    res = th - jac.T @ lam
    total = float(res.norm() / th.norm())
    if not per_layer:
        return total
    layers, o = {}, 0
    for name, p in params.items():
        layers[name] = float(res[o:o + p.numel()].norm() / p.detach().norm())
        o += p.numel()
    return total, layers


def kink_residual(model, split, tol: float = 1e-3, steps: int = 3000) -> tuple[float, list[float], list[float]]:
    """The truth residual when the ReLU derivative of every (training sample, unit) pair sitting ON a kink
    (|pre-activation| < tol × the layer's median) is a free value in [0, 1] — the Clarke generalised derivative
    that a nonsmooth stationary point uses — and λ ≥ 0 is free. Closed form for the bias-free MLP d-h-h-1 of these
    benchmarks (victim diagnostic only). Returns (total, per layer, mean on-kink pairs per member per hidden layer)."""
    mod = model.module
    w1, w2, w3 = [p.detach().double().cpu() for p in mod.parameters()]
    x = model.preprocess(split.train.x.to(model.device)).flatten(1).double().cpu()
    y = (2 * split.train.y - 1).double()
    z1 = x @ w1.T
    h1 = torch.relu(z1)
    z2 = h1 @ w2.T
    h2 = torch.relu(z2)
    on1, on2 = z1.abs() < tol * z1.abs().median(), z2.abs() < tol * z2.abs().median()
    u1, u2 = torch.zeros_like(z1, requires_grad=True), torch.zeros_like(z2, requires_grad=True)
    lam_p = torch.full((len(x),), -2.0, dtype=torch.float64, requires_grad=True)
    th2 = float((w1 ** 2).sum() + (w2 ** 2).sum() + (w3 ** 2).sum())
    scale = th2 / float((h2 @ w3[0]).abs().mean() * 3)  # λ unit: Euler, degree 3

    def residuals() -> list[torch.Tensor]:
        d1 = torch.where(on1, torch.sigmoid(u1), (z1 > 0).double())
        d2 = torch.where(on2, torch.sigmoid(u2), (z2 > 0).double())
        c = torch.nn.functional.softplus(lam_p) * scale / len(x) * y
        a = c[:, None] * d2 * w3  # per-sample output-layer deltas into layer 2
        return [w1 - (d1 * (a @ w2)).T @ x, w2 - a.T @ h1, w3 - (c[:, None] * h2).sum(0, keepdim=True)]

    opt = torch.optim.Adam([lam_p, u1, u2], lr=0.05)
    for _ in range(steps):
        loss = sum((r ** 2).sum() for r in residuals()) / th2
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        res = residuals()
    total = float(torch.sqrt(sum((r ** 2).sum() for r in res) / th2))
    return total, [float(r.norm() / w.norm()) for r, w in zip(res, (w1, w2, w3), strict=True)], \
        [float(on1.sum(1).double().mean()), float(on2.sum(1).double().mean())]


def section_header(title: str, load0: float, t_all: float) -> str:
    """A RESULTS.md section title and its machine line (date, CPU, torch, threads, load at start and end, total)."""
    return (f"\n## {title}\n\n{dt.datetime.now().isoformat(timespec='seconds')}, {platform.machine()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
            f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end"
            + (" (shared 2-core machine: wall times vary up to 10×)" if (os.cpu_count() or 1) <= 4 else "")
            + f"; total {time.perf_counter() - t_all:.0f} s.")


def publish(text: str, append: bool = True) -> None:
    """Print a benchmark's section and append it to benchmarks/RESULTS.md."""
    print(text)
    if append:
        with open(ROOT / "RESULTS.md", "a") as f:
            f.write(text)


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 5 ms from /proc/self/statm (Linux); on a CUDA
    device, the peak of torch's allocated GPU memory above the level at entry instead."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.cuda = torch.device(device).type == "cuda"

    def __enter__(self) -> PeakRSS:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.base) / 2**20
            return
        self._stop.set()
        self._t.join()
        self.mib = (self.peak - self.base) / 2**20


class _FlopCount(TorchDispatchMode):
    """Counts matmul/conv FLOPs of every aten op with torch's own formulas (FlopCounterMode's module hooks clash with
    ``autograd.grad``, so only its registry is used)."""

    total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **(kwargs or {}), out_val=out)
        return out


def speed(model, m: int, cfg: KKTConfig, steps: int = 30) -> dict:
    """FLOPs of one iteration (FlopCounterMode), its time, and the floor from a plain matmul timed here."""
    from netinv.attacks.kkt import _optimizer

    dtype = torch.float32 if cfg.dtype == "float32" else torch.float64
    dev = model.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    prob = _Problem(model, dtype, cfg, 3.0)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn((m, *model.input_shape), generator=g) * 0.1).to(dev, dtype).requires_grad_()
    lam = torch.rand(m, generator=g).to(dev, dtype).requires_grad_()
    y = (torch.arange(m) * 2 // m).to(dev)
    ox, ol = _optimizer(cfg, x, cfg.lr_x), _optimizer(cfg, lam, cfg.lr_lam)
    with _FlopCount() as fc:
        prob.step(x, lam, y, 1.0, ox, ol)
    flops = fc.total
    for _ in range(3):
        prob.step(x, lam, y, 1.0, ox, ol)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        prob.step(x, lam, y, 1.0, ox, ol)
    sync()
    step_s = (time.perf_counter() - t) / steps
    a, b = torch.randn(m, 1000, dtype=dtype, device=dev), torch.randn(1000, 1000, dtype=dtype, device=dev)
    for _ in range(3):
        a @ b
    sync()
    t = time.perf_counter()
    reps = 50
    for _ in range(reps):
        a @ b
    sync()
    rate = 2 * m * 1000 * 1000 * reps / (time.perf_counter() - t)
    return {"flops": flops, "step_s": step_s, "matmul_gflops": rate / 1e9, "floor_s": flops / rate,
            "ratio": step_s / (flops / rate)}


def attack_row(name: str, model, split, cfg: KKTConfig, seed: int = 0, out: Path | None = None) -> dict:
    with PeakRSS(model.device) as mem:
        cands = KKTReconstruction(model, cfg).invert(seed=seed, out=out)
    ev = evaluate(cands.x, split.train, split.heldout, model=model, candidate_labels=cands.y)
    return {"name": name, "n": len(split.train), "m": len(cands), "wall": cands.info["wall_time_s"],
            "its": cands.info["iterations_per_s"], "mem": mem.mib, "crit": cands.info["criterion"], "ev": ev}


def fmt(r: dict, target: tuple[float, float]) -> str:
    a, nz, re = r["ev"].attack, r["ev"].noise, r["ev"].real_heldout
    hit = "yes" if a.frac_leaked >= target[0] and a.auc >= target[1] else "no"
    ml = r["ev"].margin_leakage
    return (f"| {r['name']} | {r['n']} | {r['m']} | {r.get('resid', float('nan')):.3f} | {r['wall']:.0f} | "
            f"{r['its'] or 0:.1f} | {r['mem']:.0f} | {r['crit']:.4f} | "
            f"{a.n_leaked}/{r['n']} ({a.frac_leaked:.0%}) | {a.auc:.3f} | {nz.frac_leaked:.0%} / {nz.auc:.3f} | "
            f"{re.frac_leaked:.0%} / {re.auc:.3f} | {ml['leaked']['attack']}/{ml['n_on_margin']} | "
            f"{a.best_mean_ssim:.3f} | {a.n_above_threshold} | {hit} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="ref,n5,n10,n25,n100,n250,wd,sweep",
                    help="ref, nK (K members per class, any K but 50 = ref), wd, sweep")
    ap.add_argument("--cache", type=Path, default=Path("runs/bench-kkt"))
    ap.add_argument("--trials", type=int, default=6, help="sweep trials")
    ap.add_argument("--jobs", type=int, default=1, help="parallel sweep trials")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: victims are trained/loaded and attacked there")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    rows = args.rows.split(",")
    dev = args.device
    os.environ.setdefault("NETINV_PROGRESS", "0")
    load0, t_all = os.getloadavg()[0], time.perf_counter()
    cfg = KKTConfig(show_progress=False)
    target = (0.30, 0.75)
    results, lines = [], []

    ref, ref_split, ref_train_s = victim(args.cache, 50, device=dev)
    ref_resid = truth_residual(ref, ref_split)
    sp = speed(ref, 2 * len(ref_split.train), cfg)
    lines.append(f"Reference victim: train acc {ref.accuracy(ref_split.train.x, ref_split.train.y):.3f}, held-out acc "
                 f"{ref.accuracy(ref_split.heldout.x, ref_split.heldout.y):.3f}, "
                 f"{ref.meta.get('epochs_run')} epochs" + (f", trained in {ref_train_s:.0f} s" if ref_train_s else
                                                            " (cached)") +
                 f"; KKT residual of the true training set {ref_resid:.3f}.")
    where = torch.cuda.get_device_name() if ref.device.type == "cuda" else "CPU"
    lines.append(f"Speed on {where} (m = {2 * len(ref_split.train)}, {cfg.dtype}): one iteration "
                 f"{sp['step_s'] * 1e3:.1f} ms = "
                 f"{1 / sp['step_s']:.1f} it/s; {sp['flops'] / 1e9:.2f} GFLOP counted (forward + both backward "
                 f"passes); plain {2 * len(ref_split.train)}×1000·1000×1000 matmul here: "
                 f"{sp['matmul_gflops']:.1f} GFLOP/s -> floor {sp['floor_s'] * 1e3:.1f} ms; iteration / floor = "
                 f"**{sp['ratio']:.2f}×**.")
    print("\n".join(lines), flush=True)

    if "ref" in rows:
        r = attack_row("reference, defaults", ref, ref_split, cfg)
        r["resid"] = ref_resid
        results.append(r)
        print(fmt(r, target), flush=True)
    for n in sorted(int(r[1:]) for r in rows if r[:1] == "n" and r[1:].isdigit()):  # nK: K members per class
        if n != 50:
            model, split, _ = victim(args.cache, n, device=dev)
            r = attack_row(f"n = {n} per class", model, split, cfg)
            r["resid"] = truth_residual(model, split) if n <= 100 else float("nan")
            results.append(r)
            print(fmt(r, target), flush=True)
    if "wd" in rows:
        model, split, _ = victim(args.cache, 50, WEIGHT_DECAY, device=dev)
        r = attack_row(f"weight decay {WEIGHT_DECAY:g}", model, split, cfg)
        r["resid"] = truth_residual(model, split)
        results.append(r)
        print(fmt(r, target), flush=True)
    reach = None
    if results and results[0]["name"].startswith("reference"):
        a = results[0]["ev"].attack
        if a.frac_leaked >= target[0] and a.auc >= target[1]:
            reach = f"reached by the single default run in {results[0]['wall']:.0f} s"
    if "sweep" in rows:
        t = time.perf_counter()
        with PeakRSS(ref.device) as mem:
            res = sweep(ref, KKTReconstruction, cfg, n_trials=args.trials, out=args.cache / "sweep", n_jobs=args.jobs,
                        study_name=f"bench-{dt.datetime.now().strftime('%H%M%S')}", seed=0)
        wall = time.perf_counter() - t
        ev = evaluate(res.candidates.x, ref_split.train, ref_split.heldout, model=ref,
                      candidate_labels=res.candidates.y)
        r = {"name": f"sweep {args.trials} trials, pool {len(res.candidates.info['pooled_trials'])}",
             "n": len(ref_split.train), "m": len(res.candidates), "wall": wall, "its": None, "mem": mem.mib,
             "crit": res.candidates.info["criterion"], "ev": ev, "resid": ref_resid}
        results.append(r)
        print(fmt(r, target), flush=True)
        if reach is None and ev.attack.frac_leaked >= target[0] and ev.attack.auc >= target[1]:
            reach = f"reached by the sweep in {wall:.0f} s"
    reach = reach or "not reached by the runs above"

    head = ("| run | n train | m cands | KKT resid. (truth) | wall s | it/s | peak MiB | attacker criterion | "
            "above τ | AUC | noise: above τ / AUC | real held-out: above τ / AUC | on-margin leaked | "
            "Haim best-10 SSIM | Haim SSIM>0.4 | target met |\n|" + "---|" * 16)
    table = "\n".join([head] + [fmt(r, target) for r in results])
    ref_ev = results[0]["ev"].table() if results else ""
    text = (section_header("KKT reconstruction — digits parity MLP 64-1000-1000-1 (benchmarks/kkt_digits.py)",
                           load0, t_all) +
            f" Device: {where} (peak MiB: resident memory on the CPU, allocated GPU memory on CUDA).\n"
            f"\nVictim recipe: {VICTIM}, {TRAIN}. Attack defaults: {cfg}.\n\n" + "\n".join(lines) + "\n\n" + table +
            f"\n\nLeakage target (≥ 30 % of training images above τ and AUC ≥ 0.75): {reach}.\n\n"
            f"Reference run, full evaluation:\n\n```\n{ref_ev}\n```\n")
    publish(text, append=not args.no_append)


if __name__ == "__main__":
    main()
