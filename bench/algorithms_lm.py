"""Every self-play / Nash / iterative algorithm on SmolLM2-135M-Instruct at an equal budget of judge calls.

For each oracle (a simulated annotator pool behind the pairwise-judge interface: ``noisy``, the default
noisy pool, and ``intransitive``, majority-of-three over gold score, brevity and diversity: cyclic) and each
algorithm, one LoRA run from the same initial policy through ``preflab.training.train`` with the same
prompts, sampling settings and learning rate, and the same number of judge calls (``--rounds`` ×
``--prompts`` × 3: K = 3 samples per prompt and all 3 pairs for the iterative and self-play schedules, one
judge call per sample against its opponent for Nash-MD / Nash-MP, K = 3 best-vs-worst for online DPO, and
three times the prompts for XPO's one call per prompt). Then, on held-out prompts of the same suite:

* each policy's answers (one per prompt, temperature 1, seeded) and KL(π‖π_0) from them (k1 estimator);
* the win rate against the initial policy: mean over prompts of the oracle's P(y_π ≻ y_0), with a
  percentile-bootstrap 95% CI over prompts;
* a round-robin tournament among all policies (initial included): every pair's mean P over prompts, and a
  Bradley–Terry rating fitted to those soft outcomes (initial = 0), with bootstrap CIs over prompts;
* wall-clock of each training run.

    OMP_NUM_THREADS=1 python bench/algorithms_lm.py --out runs/algorithms_lm --rounds 2 --prompts 8

Writes ``results-<oracle>.json`` per oracle and prints the tables.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np

ITERATIVE = ("iterative_dpo", "sppo", "inpo", "dno")
SELF_PLAY = ("nash_md", "nash_mp", "spo")
METHODS = ("iterative_dpo", "nash_md", "sppo", "inpo", "nash_mp", "dno", "spo", "online_dpo", "xpo")


def overrides(method: str, oracle: str, out: Path, args: argparse.Namespace) -> list[str]:
    steps_per_round = max(1, math.ceil(args.prompts / args.batch_size))
    common = [
        f"algorithm={method}",
        f"output_dir={out}",
        "seed=0",
        "lora.enabled=true",
        "lora.r=8",
        "lora.alpha=16",
        "lora.dropout=0.0",
        "online.judge=annotators",
        f"online.judge_args.pool={oracle}",
        "online.tasks=default",
        f"online.num_prompts={args.rounds * args.prompts}",
        f"online.max_new_tokens={args.tokens}",
        "online.temperature=1.0",
        f"train.lr={args.lr}",
        f"train.batch_size={args.batch_size}",
        "train.grad_accum=1",
        "train.bf16=false",
        "train.progress=false",
        "train.save_final=false",
        "train.warmup_ratio=0",
        "train.scheduler=constant",
        "train.max_length=384",
    ]
    if method in ITERATIVE or method in SELF_PLAY:
        common += [
            f"iterative.rounds={args.rounds}",
            "iterative.samples_per_prompt=3",
            f"iterative.prompts_per_round={args.prompts}",
        ]
        if method in ITERATIVE:
            common += ["iterative.pairs=best_worst"]
        if method == "nash_mp":
            common += [f"iterative.steps_per_round={max(2, steps_per_round)}"]
        return common
    if method == "online_dpo":  # K = 3, all 3 pairs judged, best vs worst: 3 calls per prompt
        return [*common, "online.samples_per_prompt=3", f"train.max_steps={args.rounds * steps_per_round}"]
    # xpo: one judge call per prompt: three times the prompts for the same number of calls
    return [*common, f"train.max_steps={3 * args.rounds * steps_per_round}"]


class CountingJudge:
    """Counts the pairs a judge is asked about (every schedule calls ``compare_batch``)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.name = getattr(inner, "name", "judge")

    def compare_batch(self, prompts, a, b):
        self.calls += len(prompts)
        return self.inner.compare_batch(prompts, a, b)

    def compare(self, prompt, a, b):
        self.calls += 1
        return self.inner.compare(prompt, a, b)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def bt_ratings(names: list[str], pref: np.ndarray) -> np.ndarray:
    """Bradley–Terry ratings (the first fixed at 0) maximising Σ_{a≠b} P_ab log σ(θ_a − θ_b)."""
    from scipy.optimize import minimize

    n = len(names)

    def nll(free: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.concatenate([[0.0], free])
        d = theta[:, None] - theta[None, :]
        logsig = -np.logaddexp(0.0, -d)
        mask = ~np.eye(n, dtype=bool)
        value = -(pref * logsig)[mask].sum() + 1e-3 * (free**2).sum()
        grad_mat = pref * (1.0 - 1.0 / (1.0 + np.exp(-d)))  # d/dθ_a of P_ab log σ(θ_a − θ_b)
        grad_mat[~mask] = 0.0
        grad = -(grad_mat.sum(1) - grad_mat.sum(0)) + 2e-3 * np.concatenate([[0.0], free])
        return float(value), grad[1:]

    res = minimize(nll, np.zeros(n - 1), jac=True, method="L-BFGS-B")
    return np.concatenate([[0.0], res.x])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/algorithms_lm"))
    parser.add_argument("--oracles", nargs="+", default=["noisy", "intransitive"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=8, help="prompts per round")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=24, help="max new tokens per sample")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-prompts", type=int, default=32)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--tournament-only",
        action="store_true",
        help="skip training: rate the policies whose answers an earlier run saved",
    )
    args = parser.parse_args()

    import torch

    from preflab.config import load_config
    from preflab.evaluation.lm import sample_kl
    from preflab.evaluation.stats import bootstrap_mean
    from preflab.feedback import make_judge
    from preflab.feedback.tasks import get_suite
    from preflab.models import load_model, load_tokenizer
    from preflab.training import train

    torch.manual_seed(0)
    tok = load_tokenizer("smollm2-135m-instruct")
    base = load_model("smollm2-135m-instruct", dtype="float32").eval()
    eval_tasks = get_suite("default").tasks(args.eval_prompts, seed=12345)
    eval_prompts = [t.prompt for t in eval_tasks]
    args.out.mkdir(parents=True, exist_ok=True)
    for oracle in args.oracles:
        eval_judge = make_judge("annotators", tasks=eval_tasks, pool=oracle)
        partial = args.out / f"partial-{oracle}.json"
        saved = json.loads(partial.read_text()) if partial.is_file() else {"answers": {}, "rows": {}}
        answers: dict[str, list[str]] = saved["answers"]
        rows: dict[str, dict] = saved["rows"]
        if "initial" not in answers:
            answers["initial"] = sample_kl(base, base, tok, eval_prompts, max_new_tokens=args.tokens, seed=777)[1].texts
        for method in [] if args.tournament_only else args.methods:
            if method in rows:
                continue
            out = args.out / oracle / method
            cfg = load_config(None, overrides(method, oracle, out, args))
            from preflab.training.judging import judge_from_config

            inner, prompts = judge_from_config(cfg)
            judge = CountingJudge(inner)
            model = copy.deepcopy(base)
            start = time.perf_counter()
            result = train(cfg, judge=judge, records=prompts, model=model, tokenizer=tok)
            wall = time.perf_counter() - start
            model.eval()
            kl, samples = sample_kl(model, base, tok, eval_prompts, max_new_tokens=args.tokens, seed=777)
            answers[method] = samples.texts
            wins = [
                eval_judge.compare(p, a, b)
                for p, a, b in zip(eval_prompts, samples.texts, answers["initial"], strict=True)
            ]
            est = bootstrap_mean(wins, n_bootstrap=args.bootstrap, seed=0)
            rows[method] = {
                "win_rate": est.value,
                "ci": [est.ci_low, est.ci_high],
                "kl": kl.kl,
                "kl_se": kl.se,
                "kl_k3": kl.k3,
                "judge_calls": judge.calls,
                "steps": result.steps,
                "train_tokens": result.tokens,
                "wall_s": wall,
            }
            print(
                f"{oracle:12s} {method:14s} win {est.value:.3f} [{est.ci_low:.3f}, {est.ci_high:.3f}]  "
                f"KL {kl.kl:7.3f}  "
                f"calls {judge.calls:4d}  steps {result.steps:3d}  tokens {result.tokens:6d}  {wall:6.1f}s",
                flush=True,
            )
            partial.write_text(json.dumps({"answers": answers, "rows": rows}))
            del model
        names = ["initial", *rows]
        per_prompt = np.zeros((len(names), len(names), len(eval_prompts)))
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i < j:
                    p = np.array(
                        [
                            eval_judge.compare(q, x, y)
                            for q, x, y in zip(eval_prompts, answers[a], answers[b], strict=True)
                        ]
                    )
                    per_prompt[i, j], per_prompt[j, i] = p, 1.0 - p
        pref = per_prompt.mean(-1)
        rating = bt_ratings(names, pref)
        rng = np.random.default_rng(0)
        reps = np.array(
            [
                bt_ratings(names, per_prompt[:, :, rng.integers(0, len(eval_prompts), len(eval_prompts))].mean(-1))
                for _ in range(200)
            ]
        )
        lo, hi = np.percentile(reps, [2.5, 97.5], axis=0)
        result_doc = {
            "oracle": oracle,
            "args": {k: str(v) for k, v in vars(args).items()},
            "methods": rows,
            "tournament": {"names": names, "pref": pref.tolist()},
            "bt": {
                n: {"rating": float(r), "ci": [float(a), float(b)]}
                for n, r, a, b in zip(names, rating, lo, hi, strict=True)
            },
        }
        (args.out / f"results-{oracle}.json").write_text(json.dumps(result_doc, indent=1))
        print(f"\n{oracle}: Bradley–Terry ratings (initial = 0), 95% bootstrap CI over prompts")
        for n in sorted(names, key=lambda n: -result_doc["bt"][n]["rating"]):
            b = result_doc["bt"][n]
            print(f"  {n:14s} {b['rating']:+.3f} [{b['ci'][0]:+.3f}, {b['ci'][1]:+.3f}]")
        print(flush=True)


if __name__ == "__main__":
    main()
