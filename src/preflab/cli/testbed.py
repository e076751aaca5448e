"""``preflab testbed``: train objectives on an exact preference game and compare them with the exact answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

testbed_app = typer.Typer(
    help="Exact tabular preference games: solvers and convergence of every objective.", no_args_is_help=True
)

_TARGETS = ("nash", "kl", "minimax", "maxmin")


def _target(game, beta: float, target: str) -> np.ndarray:  # noqa: ANN001
    from ..errors import ConfigError
    from ..testbeds.solvers import kl_optimum, maxmin_policy, minimax_winner, regularized_nash

    if target == "nash":
        return regularized_nash(game, beta)
    if target == "kl":
        return kl_optimum(game, beta)
    if target == "minimax":
        return minimax_winner(game)
    if target == "maxmin":
        return maxmin_policy(game, beta)[0]
    raise ConfigError(f"unknown target '{target}' (known: {', '.join(_TARGETS)})", field="target")


@testbed_app.command("run")
def run(
    game: str = typer.Option(
        "cyclic", "--game", "-g", help="bt, cyclic, rps, two_group, random, random_bt, random_groups."
    ),
    algorithms: str = typer.Option(
        "dpo,ipo,inpo,nash_md,nash_mp,sppo", "--algorithms", "-a", help="Comma-separated testbed algorithms."
    ),
    beta: float = typer.Option(
        0.1, "--beta", min=1e-4, help="KL(π‖π_ref) regularisation β of the game and objectives."
    ),
    target: str = typer.Option(
        "nash", "--target", help="Compare with: nash (β-regularised Nash), kl, minimax, maxmin."
    ),
    objective: str | None = typer.Option(
        None,
        "--objective",
        help="Train this objective with each algorithm that leaves its objective open (online_dpo, iterative_dpo: "
        "ipo, simpo, ...; `preflab algorithms`).",
    ),
    iterations: int | None = typer.Option(
        None, "--iterations", min=1, help="Override every algorithm's iteration count."
    ),
    tol: float = typer.Option(1e-3, "--tol", min=0.0, help="Distance counted as converged."),
    flip_rate: float = typer.Option(0.0, "--flip-rate", min=0.0, max=0.49, help="Annotators' label-flip rate ε."),
    seed: int = typer.Option(0, "--seed", help="Seed of random games."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Directory for convergence.png and results.json."),
) -> None:
    """Train each algorithm with exact expectations and print its distance to the target, exploitability,
    KL to the reference and iterations to tolerance; write a convergence plot."""
    from ..algorithms import get_algorithm, with_objective
    from ..testbeds.algorithms import evaluate, run_algorithm
    from ..testbeds.games import make_game
    from ..testbeds.plotting import plot_convergence
    from ..testbeds.solvers import exploitability, kl_divergence, tv_distance

    g = make_game(game, seed=seed, flip_rate=flip_rate)
    names = [a.strip() for a in algorithms.split(",") if a.strip()]
    # each algorithm's row as it will train (its objective and that pair's claim), checked before any training
    rows = {name: get_algorithm(name, field_name="algorithms") for name in names}
    if objective is not None:
        rows = {name: with_objective(row, objective, field_name="--objective") for name, row in rows.items()}
    goal = _target(g, beta, target)
    console = Console() if Console().is_terminal else Console(width=120)
    evaluations = []
    overrides = {} if iterations is None else {"iterations": iterations}
    with console.status("training") as status:
        for name in names:
            status.update(f"training {name} on {g.name}")
            traj = run_algorithm(name, g, beta, objective=objective, **overrides)
            ev = evaluate(traj, g, goal, 0.0 if target == "minimax" else beta, tol)
            if rows[name].objective != get_algorithm(name).objective:  # a chosen objective: name both
                ev.algorithm = f"{name} + {rows[name].objective}"
            evaluations.append(ev)
    table = Table(
        title=f"{g.name} game, β = {beta:g}, target = {target} (π_ref: TV {tv_distance(g.ref, goal):.3g}, "
        f"exploitability {exploitability(g, g.ref, beta):.3g})"
    )
    for col in (
        "algorithm",
        "paper's target",
        "iterate",
        f"TV to {target}",
        "exploit." if target != "minimax" else "exploit. (β=0)",
        "KL to ref",
        f"iters < {tol:g}",
        "steps",
    ):
        table.add_column(
            col,
            justify="left" if col in ("algorithm", "paper's target", "iterate") else "right",
            no_wrap=col != "paper's target",  # the table's claims wrap; the numbers never do
        )
    for name, ev in zip(names, evaluations, strict=True):
        table.add_row(
            ev.algorithm,
            rows[name].claim,
            ev.guarantee,
            f"{ev.distance:.2e}",
            f"{ev.exploitability:.2e}",
            f"{ev.kl_ref:.4f}",
            "—" if ev.iterations_to_tol is None else str(ev.iterations_to_tol),
            str(ev.evals),
        )
    console.print(table)
    console.print(
        f"target policy: {np.array2string(goal, precision=4)}  "
        f"(KL to π_ref {kl_divergence(goal, g.ref, g.context_probs):.4f})"
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        png = plot_convergence(
            evaluations,
            out / "convergence.png",
            title=f"{g.name} game, β = {beta:g}, target: {target}",
            tol=tol,
        )
        results = [
            {
                "algorithm": name,
                "objective": rows[name].objective,
                "claim": rows[name].claim,  # the (algorithm, objective) pair's own: "not checked" without a Variant
                "verified_by": rows[name].verified_by or None,
                **{
                    k: getattr(ev, k)
                    for k in ("distance", "exploitability", "kl_ref", "iterations_to_tol", "guarantee", "evals")
                },
            }
            for name, ev in zip(names, evaluations, strict=True)
        ]
        (out / "results.json").write_text(
            json.dumps(
                {"game": g.name, "beta": beta, "target": target, "results": results}, indent=2, ensure_ascii=False
            )
        )
        console.print(f"wrote {escape(str(png))} and {escape(str(out / 'results.json'))}")


@testbed_app.command("solve")
def solve(
    game: str = typer.Option(
        "cyclic", "--game", "-g", help="bt, cyclic, rps, two_group, random, random_bt, random_groups."
    ),
    beta: float = typer.Option(0.1, "--beta", min=1e-4, help="KL regularisation β."),
    seed: int = typer.Option(0, "--seed", help="Seed of random games."),
) -> None:
    """Print the exact answers of a game: KL optimum, regularised Nash, minimax winner, max-min policy."""
    from ..testbeds.games import make_game
    from ..testbeds.solvers import exploitability

    g = make_game(game, seed=seed)
    console = Console()
    table = Table(title=f"{g.name} game, β = {beta:g}")
    for col in ("solution", "policy (context 0)", "exploitability at β"):
        table.add_column(col)
    rows = [("π_ref", g.ref)]
    for label, kind in (
        ("KL optimum", "kl"),
        ("regularised Nash", "nash"),
        ("minimax winner (β = 0)", "minimax"),
        ("max-min policy", "maxmin"),
    ):
        if (kind == "kl" and g.rewards is None) or (kind == "maxmin" and g.group_rewards is None):
            continue
        rows.append((label, _target(g, beta, kind)))
    for label, pi in rows:
        table.add_row(label, np.array2string(pi[0], precision=4), f"{exploitability(g, pi, beta):.3e}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(testbed_app, name="testbed")
