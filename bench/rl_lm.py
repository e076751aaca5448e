"""Policy-gradient RLHF next to DPO on SmolLM2-135M-Instruct at an equal budget of sampled completions.

Every method trains LoRA adapters from the same initial policy with its own recipe (``recipes/<name>.yaml``:
its group size, KL coefficient and estimator, PPO epochs) and the task suite's gold scorer as the reward or the
pairwise judge, on prompts from one seeded pool, with one learning rate and one sampling setting (temperature,
max new tokens). Each method samples the same number of completions (``--rollouts`` × 32):

* ``ppo``, ``rloo``, ``reinforce_pp``, ``remax``, ``grpo``: ``--rollouts`` rollouts of 32 completions (their
  recipes' G × prompts per rollout); ReMax also decodes one greedy completion per prompt, counted in its tokens;
* ``online_dpo``: two samples per prompt, the gold judge picks chosen/rejected, 16 prompts per step;
* ``dpo``: one round of iterative DPO = offline DPO on π_0's samples (4 per prompt, gold best-vs-worst pairs),
  trained for as many steps as GRPO takes.

Then, on held-out prompts of the same suite (none of them in the training pool), one answer per prompt from
each policy (temperature 1, seeded): the gold win rate against π_0's answer (P from the gold scores, ties ½) with
a percentile-bootstrap 95% CI over prompts, the mean gold score, and KL(π‖π_0) (k1, from the same answers).
The per-step curves (gold reward of the step's fresh on-policy samples, KL, generated tokens so far) come from
each run's ``metrics.jsonl``; each run's HTML report (``OUT/<method>/report/report.html``) plots them.

    OMP_NUM_THREADS=2 python bench/rl_lm.py --out runs/rl_lm --rollouts 10

Writes ``OUT/results.json`` (rows and curves) and prints the table.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

RL = ("ppo", "rloo", "reinforce_pp", "remax", "grpo")
METHODS = (*RL, "online_dpo", "dpo")
COMPLETIONS_PER_ROLLOUT = 32


def overrides(method: str, out: Path, args: argparse.Namespace) -> tuple[str, list[str]]:
    """(recipe, --set overrides) for one method of the experiment."""
    budget = args.rollouts * COMPLETIONS_PER_ROLLOUT
    common = [
        f"output_dir={out}",
        "seed=0",
        "lora.dropout=0.0",
        "online.judge=gold",
        "online.judge_args={}",
        "online.tasks=default",
        f"online.num_prompts={args.pool}",
        f"online.max_new_tokens={args.tokens}",
        f"online.temperature={args.temperature}",
        f"train.lr={args.lr}",
        "train.warmup_ratio=0",
        "train.scheduler=constant",
        "train.progress=false",
        "train.save_final=false",
        f"train.save_every={10**6}",
        "train.max_length=512",
        f"train.bf16={str(args.bf16).lower()}",
    ]
    if method in RL:
        # 32 completions per rollout, minibatches of 16: 2 steps per rollout and epoch
        epochs = 2 if method == "ppo" else 1
        return method, [*common, f"train.max_steps={args.rollouts * 2 * epochs}"]
    steps = args.rollouts * 2  # as many optimizer steps as GRPO takes
    if method == "online_dpo":  # 2 samples per prompt: budget / 2 prompts over the run
        per_step = budget // 2 // steps
        return method, [
            *common,
            "online.samples_per_prompt=2",
            f"train.batch_size={per_step // 2}",
            "train.grad_accum=2",
            f"train.max_steps={steps}",
        ]
    # dpo: one round of iterative DPO from π_0's samples, 4 per prompt
    return "iterative_dpo", [
        *common,
        "iterative.rounds=1",
        "iterative.samples_per_prompt=4",
        f"iterative.prompts_per_round={budget // 4}",
        f"iterative.steps_per_round={steps}",
        "iterative.pairs=best_worst",
        "iterative.reference=initial",
    ]


GOLD_KEYS = ("rollout/gold_reward", "gold_reward")
KL_KEYS = ("kl/sequence", "kl")


def curves(run: Path) -> list[dict]:
    """Per-step gold reward of the step's own samples, the KL the step logged, and its times."""
    points = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        if m.get("split", "train") != "train" or "step" not in m:
            continue
        gold = next((m[k] for k in GOLD_KEYS if k in m), None)
        kl = next((m[k] for k in KL_KEYS if k in m), None)
        points.append(
            {
                "step": m["step"],
                "gold": gold,
                "kl": kl,
                "time_rollout": m.get("time/rollout"),
                "time_update": m.get("time/update"),
                "step_time": m.get("step_time"),
            }
        )
    return points


class TokenCounter:
    """Counts the completions and tokens every sampling call of a training run returns."""

    def __init__(self) -> None:
        self.completions = self.tokens = 0

    def wrap(self, fn):
        def counted(*a, **kw):
            out = fn(*a, **kw)
            for group in out:
                for c in group if isinstance(group, list | tuple) else [group]:
                    self.completions += 1
                    self.tokens += len(getattr(c, "token_ids", ()))
            return out

        return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/rl_lm"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--rollouts", type=int, default=10, help="rollouts of 32 completions per method")
    parser.add_argument("--pool", type=int, default=320, help="training prompts (one seeded pool for all)")
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per completion")
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in training (default: fp32)")
    parser.add_argument("--eval-prompts", type=int, default=64)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()

    import torch

    import preflab.generation.sampler as sampler_module
    from preflab.config import load_config
    from preflab.evaluation.lm import sample_kl
    from preflab.evaluation.report import build_report
    from preflab.evaluation.stats import bootstrap_mean
    from preflab.feedback import make_judge
    from preflab.feedback.tasks import get_suite
    from preflab.models import load_model, load_tokenizer
    from preflab.training import train
    from preflab.training.judging import judge_from_config

    recipes = Path(__file__).resolve().parent.parent / "recipes"
    torch.manual_seed(0)
    tok = load_tokenizer("smollm2-135m-instruct")
    base = load_model("smollm2-135m-instruct", dtype="float32").eval()
    pool = {t.prompt for t in get_suite("default").tasks(args.pool, seed=0)}
    eval_tasks = [t for t in get_suite("default").tasks(2 * args.eval_prompts, seed=12345) if t.prompt not in pool]
    eval_tasks = eval_tasks[: args.eval_prompts]
    eval_prompts = [t.prompt for t in eval_tasks]
    gold = make_judge("gold", tasks=eval_tasks)
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "partial.json"
    saved = json.loads(partial.read_text()) if partial.is_file() else {"answers": {}, "rows": {}}
    answers, rows = saved["answers"], saved["rows"]
    if "initial" not in answers:
        answers["initial"] = sample_kl(base, base, tok, eval_prompts, max_new_tokens=args.tokens, seed=777)[1].texts
    initial_gold = gold.score_batch(eval_prompts, answers["initial"])
    plain_sample = sampler_module.sample
    for method in args.methods:
        if method in rows:
            continue
        out = args.out / method
        recipe, sets = overrides(method, out, args)
        cfg = load_config(recipes / f"{recipe}.yaml", sets)
        judge, prompts = judge_from_config(cfg)
        counter = TokenCounter()
        sampler_module.sample = counter.wrap(plain_sample)
        model = copy.deepcopy(base)
        start = time.perf_counter()
        try:
            result = train(cfg, judge=judge, records=prompts, model=model, tokenizer=tok)
        finally:
            sampler_module.sample = plain_sample
        wall = time.perf_counter() - start
        model.eval()
        kl, samples = sample_kl(model, base, tok, eval_prompts, max_new_tokens=args.tokens, seed=777)
        answers[method] = samples.texts
        wins = [gold.compare(p, a, b) for p, a, b in zip(eval_prompts, samples.texts, answers["initial"], strict=True)]
        est = bootstrap_mean(wins, n_bootstrap=args.bootstrap, seed=0)
        scores = gold.score_batch(eval_prompts, samples.texts)
        points = curves(out)
        rows[method] = {
            "recipe": recipe,
            "win_rate": est.value,
            "ci": [est.ci_low, est.ci_high],
            "gold": sum(scores) / len(scores),
            "gold_initial": sum(initial_gold) / len(initial_gold),
            "kl": kl.kl,
            "kl_se": kl.se,
            "completions": counter.completions,
            "generated_tokens": counter.tokens,
            "steps": result.steps,
            "wall_s": wall,
            "rollout_s": sum(p["time_rollout"] or 0.0 for p in points),
            "curve": points,
        }
        try:
            build_report(out)
        except Exception as exc:  # the table matters more than one run's report
            print(f"  (report for {method} failed: {exc})", flush=True)
        r = rows[method]
        print(
            f"{method:13s} win {r['win_rate']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]  gold {r['gold']:.3f}  "
            f"KL {r['kl']:6.2f}  completions {r['completions']:4d}  tokens {r['generated_tokens']:6d}  "
            f"steps {r['steps']:3d}  {wall:6.0f}s",
            flush=True,
        )
        partial.write_text(json.dumps({"answers": answers, "rows": rows}))
        del model
    doc = {"args": {k: str(v) for k, v in vars(args).items()}, "eval_prompts": len(eval_prompts), "methods": rows}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1))
    g0 = sum(initial_gold) / len(initial_gold)
    print(f"\nheld-out prompts: {len(eval_prompts)}; π_0's mean gold score {g0:.3f}")
    print("method         win rate [95% CI]       gold   KL(π‖π_0)  completions  tokens   steps  wall s")
    for m, r in rows.items():
        print(
            f"{m:13s}  {r['win_rate']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]  {r['gold']:.3f}  "
            f"{r['kl']:6.2f} ± {r['kl_se']:.2f}  {r['completions']:5d}  {r['generated_tokens']:7d}  "
            f"{r['steps']:4d}  {r['wall_s']:6.0f}"
        )
    print("\ncurves (gold reward of each step's own samples / KL), every other step:")
    for m, r in rows.items():
        pts = r["curve"][:: max(1, math.ceil(len(r["curve"]) / 10))]
        line = "  ".join(
            f"{p['step']}:{p['gold']:.2f}/{p['kl']:.2f}" for p in pts if p["gold"] is not None and p["kl"] is not None
        )
        print(f"  {m:13s} {line}")


if __name__ == "__main__":
    main()
