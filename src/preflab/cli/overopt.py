"""``preflab overopt SAMPLES --proxy MODEL...``: best-of-n over n = 1 … N against a proxy reward model, every point
scored with the proxy and the gold scorers; the over-optimisation curve (Gao et al. 2022) as an evaluation result
that ``preflab report`` plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import ConfigError, DataError


def overopt_cmd(
    samples: Path = typer.Argument(
        ..., help="Completions file from `preflab sample -k N` (N ≥ n, gold scores from a task suite)."
    ),
    proxy: list[Path] = typer.Option(
        ..., "--proxy", help="Proxy reward model dir (a run dir or its final/); repeat for an ensemble (mean reward)."
    ),
    penalty: list[float] = typer.Option(
        [0.0],
        "--penalty",
        min=0.0,
        help="Ensemble penalty λ: select by mean − "
        "λ·std of the members' rewards (Coste et al. 2024); repeat for one curve "
        "per λ from one scoring pass.",
    ),
    n_max: int | None = typer.Option(None, "--n-max", min=1, help="Largest n (default: the samples per prompt)."),
    out: Path | None = typer.Option(
        None, "--out", help="Result JSON (default PROXY_RUN/eval/overopt[_ensemble][_penalty<λ>].json; one λ only)."
    ),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Sequences per reward-model forward pass."),
) -> None:
    """Best-of-n against a proxy reward model: proxy and gold reward against KL = log n − (n−1)/n."""
    from ..evaluation.best_of_n import best_of_n_curve, bon_sizes
    from ..evaluation.result import EvalResult
    from ..feedback.judges import RewardEnsembleJudge, RewardModelJudge
    from ..feedback.samples import read_samples
    from ..files import check_output_file
    from .rm_eval import _head_name, _model_and_run

    rows = read_samples(samples)
    if not rows:
        raise DataError("no prompts in the completions file", file=str(samples))
    for i, r in enumerate(rows):
        if r.gold_scores is None:
            raise DataError(
                "no gold scores: sample from a task suite (preflab sample --suite ...)",
                file=str(samples),
                row=i,
                field="gold_scores",
            )
    fewest = min(len(r.completions) for r in rows)
    n_top = n_max or fewest
    if n_top > fewest:
        raise DataError(
            f"best-of-{n_top} needs {n_top} completions per prompt; the file has {fewest} for some "
            "prompt (sample with -k)",
            file=str(samples),
            field="completions",
        )
    if any(lam > 0 for lam in penalty) and len(proxy) < 2:
        raise ConfigError("an ensemble penalty needs at least two --proxy models", field="penalty")
    if out is not None and len(penalty) > 1:
        raise ConfigError(
            "--out names one file; several --penalty values write one file each into the run's eval/", field="out"
        )
    resolved = [_model_and_run(p) for p in proxy]
    for m, _ in resolved:
        if _head_name(m) not in ("scalar", "hl_gauss"):
            raise ConfigError(
                f"{m} has a '{_head_name(m)}' head, not one reward per response; best-of-n needs a "
                "scalar reward model (bt_reward)",
                field="proxy",
            )
    members = [RewardModelJudge.from_pretrained(str(m), batch_size=batch_size) for m, _ in resolved]
    prompts = [r.task if r.task is not None else r.prompt for r in rows]
    flat_p = [p for p, r in zip(prompts, rows, strict=True) for _ in r.completions]
    flat_c = [c for r in rows for c in r.completions]
    if len(members) == 1:
        means, stds = members[0].score_batch(flat_p, flat_c), [0.0] * len(flat_c)
    else:
        means, stds = RewardEnsembleJudge(members).score_with_uncertainty(flat_p, flat_c)
    proxy_scores, start = [], 0
    for r in rows:
        proxy_scores.append(means[start : start + len(r.completions)])
        start += len(r.completions)
    for lam in penalty:
        selection = [
            [m - lam * s for m, s in zip(p, stds[b : b + len(p)], strict=True)]
            for p, b in zip(proxy_scores, _offsets(proxy_scores), strict=True)
        ]
        points, over = best_of_n_curve(
            proxy_scores, [r.gold_scores for r in rows], sizes=bon_sizes(n_top), selection=selection
        )
        name = "overopt" + ("_ensemble" if len(members) > 1 else "") + (f"_penalty{lam:g}" if lam > 0 else "")
        judge = f"proxy:{','.join(str(m) for m, _ in resolved)}"
        result = EvalResult(
            name=name,
            a_name="best-of-n",
            b_name="samples",
            judge=judge,
            overoptimisation=over,
            meta={
                "samples": str(samples),
                "prompts": len(rows),
                "n_max": n_top,
                "penalty": lam,
                "kl": "log n - (n-1)/n",
                "proxy_models": [str(m) for m, _ in resolved],
            },
        )
        target = out
        if target is None:
            run = resolved[0][1]
            if run is None:
                raise ConfigError(
                    f"{proxy[0]} is not a run directory; say where the result goes with --out", field="out"
                )
            target = run / "eval" / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        result.save(check_output_file(target, "--out"))
        _print(points, over, lam, target)


def _offsets(groups: list[list[float]]) -> list[int]:
    """Start of each prompt's scores in the flat list."""
    starts, at = [], 0
    for g in groups:
        starts.append(at)
        at += len(g)
    return starts


def _peak_line(over: Any, where: str) -> None:
    if over.peak_kl is not None:
        typer.echo(
            f"gold peak {over.peak_gold:.4f} at {where} (KL {over.peak_kl:.3f}); final gold "
            f"{over.final_gold:.4f}; over-optimised: {'yes' if over.overoptimised else 'no'}"
        )


def _print(points: list, over: Any, lam: float, out: Path) -> None:
    typer.echo(f"penalty λ = {lam:g}" if lam > 0 else "no penalty")
    typer.echo(f"{'n':>4} {'KL':>7} {'proxy':>9} {'gold':>9} {'± se':>7}")
    for pt in points:
        typer.echo(f"{pt.n:>4} {pt.kl:>7.3f} {pt.proxy:>9.4f} {pt.gold:>9.4f} {pt.gold_se:>7.4f}")
    _peak_line(over, f"n={over.peak_step}")
    if over.fit is not None:
        peak = "none" if over.fit.peak_kl is None else f"{over.fit.peak_kl:.3f}"
        typer.echo(
            f"fit gold = c + d(α − βd), d = √KL: α {over.fit.alpha:.4f}, β {over.fit.beta:.4f}, "
            f"R² {over.fit.r2:.3f}, predicted peak KL {peak}"
        )
    typer.echo(f"wrote {out}")


def overopt_run_cmd(
    run: Path = typer.Argument(..., help="Training run directory with checkpoints (train.save_every)."),
    proxy: list[Path] = typer.Option(
        ..., "--proxy", help="Proxy reward model dir (a run dir or its final/); repeat for an ensemble (mean reward)."
    ),
    suite: str | None = typer.Option(None, "--suite", help="Task suite of the held-out prompts (default: the run's)."),
    prompts: int = typer.Option(64, "--prompts", min=1, help="Prompts drawn; the run's training prompts are dropped."),
    seed: int = typer.Option(12345, "--seed", help="Seed of the held-out draw and of the sampling."),
    k: int = typer.Option(2, "-k", "--samples-per-prompt", min=1, help="Answers per prompt at temperature 1."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Most tokens per answer."),
    bf16: bool = typer.Option(False, "--bf16/--no-bf16", help="Sample and score under bf16 autocast."),
    out: Path | None = typer.Option(None, "--out", help="Result JSON (default RUN/eval/overopt_checkpoints.json)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Sequences per forward pass."),
) -> None:
    """A run's checkpoints on held-out prompts: proxy and gold reward against KL(π‖π_0), step by step."""
    from ..evaluation.checkpoints import checkpoint_points, held_out_tasks, run_config
    from ..evaluation.overoptimization import overoptimisation
    from ..evaluation.result import EvalResult
    from ..feedback.judges import RewardEnsembleJudge, RewardModelJudge
    from ..files import check_output_file
    from .rm_eval import _head_name, _model_and_run

    cfg = run_config(run)
    resolved = [_model_and_run(p)[0] for p in proxy]
    for m in resolved:
        if _head_name(m) not in ("scalar", "hl_gauss"):
            raise ConfigError(f"{m} has a '{_head_name(m)}' head, not one reward per response", field="proxy")
    members = [RewardModelJudge.from_pretrained(str(m), batch_size=batch_size) for m in resolved]
    judge = members[0] if len(members) == 1 else RewardEnsembleJudge(members)
    held = held_out_tasks(cfg, suite or cfg.online.tasks, prompts, seed)
    typer.echo(f"{len(held.tasks)} held-out prompts ({held.dropped} drawn prompts were training prompts, dropped)")
    points = checkpoint_points(
        run,
        held.tasks,
        judge,
        n_per_prompt=k,
        max_new_tokens=max_new_tokens,
        seed=seed,
        batch_size=batch_size,
        bf16=bf16,
        log=typer.echo,
    )
    over = overoptimisation(points, form="rl")
    result = EvalResult(
        name="overopt_checkpoints",
        a_name="checkpoints",
        b_name="initial policy",
        judge=f"proxy:{','.join(str(m) for m in resolved)}",
        overoptimisation=over,
        meta={
            "run": str(run),
            "suite": suite or cfg.online.tasks,
            "prompts": len(held.tasks),
            "dropped_training_prompts": held.dropped,
            "samples_per_prompt": k,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
            "kl": "k1 from temperature-1 samples of each checkpoint, against the run's base model",
            "proxy_models": [str(m) for m in resolved],
        },
    )
    target = out or run / "eval" / "overopt_checkpoints.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    result.save(check_output_file(target, "--out"))
    _peak_line(over, f"step {over.peak_step}")
    if over.fit is not None:
        peak = "none" if over.fit.peak_kl is None else f"{over.fit.peak_kl:.3f}"
        typer.echo(f"fit gold = c + d(α − β log d), d = √KL: R² {over.fit.r2:.3f}, predicted peak KL {peak}")
    typer.echo(f"wrote {target}")


def register(app: typer.Typer) -> None:
    app.command("overopt")(overopt_cmd)
    app.command("overopt-run")(overopt_run_cmd)
