"""``preflab arena``: play online-learning agents (classical and language-model) and measure their regret."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

arena_app = typer.Typer(
    help="The regret arena: experts, bandits, dueling bandits, repeated games.", no_args_is_help=True
)


@arena_app.command("run")
def run(
    env: str = typer.Option(
        "experts",
        "--env",
        "-e",
        help="experts[:adversarial|stochastic|nonstationary|adaptive|"
        "ftl_trap|lazy_trap], bandit[:bernoulli|close], duel[:condorcet|cyclic|rps|random], "
        "game[:rps|coordination|prisoners|random|custom].",
    ),
    agents: str = typer.Option(
        "hedge,exp3",
        "--agents",
        "-a",
        help="Comma-separated agents (see `preflab arena list`); in games a name plays itself, 'a_vs_b' pairs two.",
    ),
    horizon: int = typer.Option(50, "--horizon", "-T", help="Rounds per run."),
    seeds: int = typer.Option(5, "--seeds", "-s", help="Independent runs per agent (seeds 0..n-1)."),
    n_actions: int = typer.Option(3, "--n-actions", "-K", help="Actions (experts, bandits, duels, random games)."),
    model: str = typer.Option("smollm2-135m-instruct", "--model", help="Causal LM of the llm agents."),
    temperature: float = typer.Option(0.7, "--temperature", min=0.0, help="Sampling temperature of llm agents."),
    payoff: Path | None = typer.Option(
        None, "--payoff", help='JSON {"row": [[...]], "col": [[...]]} of losses in [0, 1] for game:custom.'
    ),
    regret_transformer: Path | None = typer.Option(
        None, "--regret-transformer", help="A trained regret-loss transformer (arena train-regret)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run directory: cells, results.json, report.html. Running again resumes."
    ),
) -> None:
    """Play each agent on each seed, print regret, the no-regret verdict and (games) the CCE gap."""
    from ..arena.report import results_table, write_report
    from ..arena.runner import ArenaConfig, run_arena
    from ..errors import ConfigError

    payoff_data = None
    if payoff is not None:
        try:
            payoff_data = json.loads(payoff.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the payoff JSON ({exc})", file=str(payoff)) from None
    names = [a.strip() for a in agents.split(",") if a.strip()]
    cfg = ArenaConfig(
        env=env,
        agents=names,
        horizon=horizon,
        seeds=seeds,
        n_actions=n_actions,
        model=model,
        temperature=temperature,
        payoff=payoff_data,
        regret_transformer=str(regret_transformer) if regret_transformer else None,
    )
    console = Console(stderr=True)

    def progress(name: str, done: int, todo: int) -> None:
        console.print(f"{escape(name)}: {done} seed(s) done, playing {todo}")

    summary = run_arena(cfg, out, progress=progress)
    header, rows = results_table(summary)
    tab = Table(title=f"{cfg.env}, T = {cfg.horizon}, {cfg.seeds} seed(s)")
    for h in header:
        tab.add_column(h, justify="left" if h in ("agent", "verdict") else "right", no_wrap=True)
    for r in rows:
        tab.add_row(*(str(c) for c in r))
    Console(width=160).print(tab)
    if out is not None:
        path = write_report(summary, out)
        Console(width=160).print(f"wrote {escape(str(out / 'results.json'))} and {escape(str(path))}")


@arena_app.command("train-regret")
def train_regret(
    out: Path = typer.Option(..., "--out", "-o", help="File to write the trained model to (torch state)."),
    n_actions: int = typer.Option(3, "--n-actions", "-K", min=2, help="Actions."),
    horizon: int = typer.Option(20, "--horizon", "-T", min=2, help="Length of the training sequences."),
    steps: int = typer.Option(600, "--steps", min=1, help="Adam steps (fresh sequences each)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation and the sequences."),
) -> None:
    """Train the single-layer self-attention learner with the regret-loss (Park et al.) and compare it with
    FTRL on held-out sequences."""
    import numpy as np

    from ..arena.regret_loss import compare_with_ftrl, save, synthetic_losses, train

    res = train(k=n_actions, horizon=horizon, steps=steps, seed=seed)
    rng = np.random.default_rng(seed + 1)
    cmp = compare_with_ftrl(
        res.model, synthetic_losses(512, horizon, n_actions, rng), synthetic_losses(512, horizon, n_actions, rng)
    )
    save(res.model, out)
    console = Console(width=160)
    console.print(f"regret-loss {res.losses[0]:.3f} -> {np.mean(res.losses[-20:]):.3f} over {steps} steps")
    console.print(
        f"held-out: TV to FTRL (entropic, fitted eta {cmp['eta']:.2f}) {cmp['tv_to_ftrl']:.3f}, "
        f"TV to uniform {cmp['tv_to_uniform']:.3f}; regret model {cmp['regret_model']:.3f}, "
        f"FTRL {cmp['regret_ftrl']:.3f}, uniform {cmp['regret_uniform']:.3f}"
    )
    console.print(f"wrote {escape(str(out))}")


@arena_app.command("distill-data")
def distill_data(
    out: Path | None = typer.Option(
        None, "--out", "-o", help="JSONL of preference pairs for DPO (TRL conversational layout)."
    ),
    sft: Path | None = typer.Option(
        None, "--sft", help="JSONL of demonstrations for SFT (prompt/completion, TRL conversational layout)."
    ),
    env: str = typer.Option("experts:stochastic", "--env", "-e", help="An experts environment."),
    teacher: str = typer.Option("hedge", "--teacher", help="A full-information agent: hedge, ftrl, ftpl, ftl."),
    seeds: str = typer.Option(
        "100-159",
        "--seeds",
        help="Training seeds 'a-b' (keep them apart from the evaluation seeds 0..n-1 of arena run).",
    ),
    horizon: int = typer.Option(15, "--horizon", "-T", min=2, help="Rounds per trajectory."),
    n_actions: int = typer.Option(2, "--n-actions", "-K", min=2, help="Actions."),
    variant: str = typer.Option("raw", "--variant", help="Prompt history: raw or summary."),
) -> None:
    """Write algorithm-distillation data. --out: pairs of the LM agent's prompt, the teacher's answer (chosen)
    and the same weights on the worse actions (rejected), for `preflab train recipes/dpo.yaml`. --sft:
    demonstrations of the teacher's answer at every round, for `preflab train recipes/sft.yaml`."""
    from ..arena.distill import distillation_demonstrations, distillation_pairs, write_pairs
    from ..errors import ConfigError

    if out is None and sft is None:
        raise ConfigError("give --out PATH (pairs for DPO), --sft PATH (demonstrations for SFT) or both", field="out")

    try:
        lo, _, hi = seeds.partition("-")
        seed_list = list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ConfigError(f"seeds must be 'a-b' or 'a' (got '{seeds}')", field="seeds") from None
    if variant not in ("raw", "summary"):
        raise ConfigError(f"unknown variant '{variant}' (known: raw, summary)", field="variant")
    console = Console(width=160)
    for path, kind, make in (
        (out, "pairs", distillation_pairs),
        (sft, "demonstrations", distillation_demonstrations),
    ):
        if path is None:
            continue
        rows = make(env, seed_list, horizon, n_actions, teacher=teacher, variant=variant)
        write_pairs(rows, path)
        console.print(
            f"wrote {len(rows)} {kind} from {len(seed_list)} {escape(teacher)} trajectories to {escape(str(path))}"
        )


@arena_app.command("list")
def list_() -> None:
    """Environments and agents."""
    from ..arena.agents import AGENTS
    from ..arena.envs import ENV_KINDS, FEEDBACK

    console = Console(width=160)
    t = Table(title="environments")
    for col in ("family", "kinds", "feedback"):
        t.add_column(col)
    for fam, kinds in ENV_KINDS.items():
        t.add_row(fam, ", ".join(kinds), FEEDBACK[fam])
    console.print(t)
    a = Table(title="agents")
    for col in ("agent", "needs", "what"):
        a.add_column(col)
    for name, (cls, what) in AGENTS.items():
        a.add_row(name, cls.needs, what)
    a.add_row("llm", "any", "causal LM prompted with the raw history (--model)")
    a.add_row("llm_summary", "any", "causal LM prompted with a summary of the history")
    a.add_row("regret_transformer", "full", "single-layer self-attention trained with the regret-loss")
    console.print(a)


def register(app: typer.Typer) -> None:
    app.add_typer(arena_app, name="arena")
