"""Policy-gradient throughput: preflab's GRPO and RLOO against TRL's ``GRPOTrainer`` and ``RLOOTrainer``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/rl_throughput.py --steps 3 --threads 1

Every row runs in its own process (peak RSS is that trainer's alone) on the same SmolLM2-135M-Instruct weights,
the same prompts (the default task suite's, through the chat template), the same G completions per prompt, the
same max new tokens, temperature and batch (one optimizer step per rollout of ``prompts × G`` completions),
full fine-tuning in fp32 (``--bf16``: bf16 autocast in both tools, for a CPU with AMX), AdamW at the same
learning rate, and the same string reward (a Python function of the completion's text). β: 0 for GRPO (TRL's
default: no reference model), 0.05 for RLOO (a frozen reference in both). The loss aggregation matches TRL 1.16's
defaults (GRPO: the mean over every completion token, its ``loss_type="dapo"``; RLOO: the mean over
completions). TRL runs in its fastest CPU setting we know (no gradient checkpointing, ``use_cpu``; bf16 only with
``--bf16``); preflab with the ``prefix_shared`` layout (each prompt encoded once for its G completions;
``--layout padded`` for the plain one).

Both tools run under the same memory allocator: the process re-executes itself once under the one ``--malloc``
picks (default ``auto``: TCMalloc or jemalloc when installed, as the ``preflab`` command does,
:mod:`preflab.launch`; ``system`` = glibc's malloc), and every worker inherits it; the header line names it.

Reported per row: completions/s and generated tokens/s over the timed steps (the first ``--warmup`` steps are
untimed: they include one-off warm-up, the first one is reported apart), the rollout/update split (preflab: its
``time/rollout`` metric; TRL: the time in ``_generate_and_score_completions``), peak RSS and the first step's loss.
First-step losses come from different samples (each tool draws its own), so they agree in kind, not to the digit: at
step 1 the ratio is 1 and the KL is 0, so both are the (token-weighted) mean of −A over the batch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, peak_rss_mb, run_worker, write_result  # noqa: E402

MODEL = "smollm2-135m-instruct"
ROWS = ("preflab-grpo", "trl-grpo", "preflab-rloo", "trl-rloo")


def reward_of(text: str) -> float:
    """A cheap verifiable-style reward: how close the answer's length is to 120 characters, in [0, 1]."""
    return max(0.0, 1.0 - abs(len(text) - 120) / 120)


def prompts(n: int, seed: int = 0) -> list[str]:
    from preflab.feedback.tasks import get_suite

    return [t.prompt for t in get_suite("default").tasks(n, seed=seed)]


def run_preflab(algo: str, args: argparse.Namespace, out_dir: str) -> dict[str, Any]:
    from preflab.config import load_config
    from preflab.feedback.judges.reward_model import RewardFnJudge
    from preflab.training import read_metrics, train

    beta = 0.0 if algo == "grpo" else 0.05
    agg = "token_mean" if algo == "grpo" else "sequence_mean"  # TRL 1.16: GRPO's "dapo" loss, RLOO's per-sequence mean
    n = args.prompts * args.g
    cfg = load_config(
        None,
        [
            f"output_dir={out_dir}",
            f"algorithm={algo}",
            f"objective.params.beta={beta}",
            f"train.bf16={'true' if args.bf16 else 'false'}",
            f"objective.params.loss_agg={agg}",
            f"train.layout={args.layout}",
            "train.progress=false",
            "train.warmup_steps=0",
            "train.scheduler=constant",
            f"train.lr={args.lr}",
            f"train.batch_size={n}",
            f"train.max_steps={args.steps}",
            "train.save_final=false",
            f"rollout.group_size={args.g}",
            f"rollout.prompts_per_rollout={args.prompts}",
            f"online.max_new_tokens={args.max_new_tokens}",
            f"online.temperature={args.temperature}",
            f"model.name_or_path={MODEL}",
        ],
    )
    judge = RewardFnJudge(lambda ps, rs: [reward_of(r) for r in rs], name="length")
    train(cfg, records=prompts(args.prompts * args.steps), judge=judge)
    rows = read_metrics(Path(out_dir) / "metrics.jsonl", "train")
    return {
        "step_s": [r["step_time"] for r in rows],
        "rollout_s": [r["time/rollout"] for r in rows],
        "tokens": [r["rollout/response_length"] * n for r in rows],
        "first_loss": rows[0]["loss"],
        "reward": [r["rollout/reward"] for r in rows],
    }


def run_trl(algo: str, args: argparse.Namespace, out_dir: str) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback

    from preflab.models import load_model, load_tokenizer

    tok = load_tokenizer(MODEL)
    model = load_model(MODEL)
    n = args.prompts * args.g
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts(args.prompts * args.steps)])

    def reward(prompts: list, completions: list, **_: Any) -> list[float]:
        return [reward_of(c[0]["content"] if isinstance(c, list) else c) for c in completions]

    common = dict(
        output_dir=out_dir,
        per_device_train_batch_size=n,
        num_generations=args.g,
        max_steps=args.steps,
        max_completion_length=args.max_new_tokens,
        temperature=args.temperature,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=args.bf16,
        gradient_checkpointing=False,
        shuffle_dataset=False,
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )
    if algo == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer

        conf = Config(beta=0.0, **common)
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer

        conf = Config(beta=0.05, **common)
    logs: list[dict[str, float]] = []
    steps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t = time.perf_counter()

        def on_step_end(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            steps.append(time.perf_counter() - self.t)

        def on_log(self, a: Any, state: Any, control: Any, logs_: Any = None, **kw: Any) -> None:
            if kw.get("logs") or logs_:
                logs.append(dict(kw.get("logs") or logs_))

    trainer = Trainer(
        model=model, reward_funcs=reward, args=conf, train_dataset=data, processing_class=tok, callbacks=[Clock()]
    )
    rollout: list[float] = []
    original = trainer._generate_and_score_completions

    def timed(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        out = original(*a, **kw)
        rollout.append(time.perf_counter() - t)
        return out

    trainer._generate_and_score_completions = timed
    trainer.train()
    train_logs = [x for x in logs if "loss" in x]
    lengths = [x.get("completions/mean_length", float("nan")) for x in train_logs]
    return {
        "step_s": steps,
        "rollout_s": rollout,
        "tokens": [m * n for m in lengths],
        "first_loss": train_logs[0]["loss"] if train_logs else float("nan"),
        "reward": [x.get("reward", float("nan")) for x in train_logs],
    }


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    tool, algo = args.row.split("-")
    with tempfile.TemporaryDirectory(prefix="bench-rl-") as out_dir:
        t0 = time.perf_counter()
        res = (run_preflab if tool == "preflab" else run_trl)(algo, args, out_dir)
        res["total_s"] = time.perf_counter() - t0
    from preflab.launch import active_allocator

    res.update(
        row=args.row,
        peak_rss_mb=peak_rss_mb(),
        threads=torch.get_num_threads(),
        warmup=args.warmup,
        malloc=active_allocator(),
    )
    write_result(args.worker_out, res)


def summarize(res: dict[str, Any], n: int) -> dict[str, Any]:
    if "error" in res:
        return {"row": res.get("row"), "error": res["error"], "log": res.get("log", "")[-800:]}
    steps, roll, toks = res["step_s"], res["rollout_s"], res["tokens"]
    skip = min(res.get("warmup", 1), len(steps) - 1)
    timed = slice(max(skip, 0), None)
    t = sum(steps[timed])
    r = sum(roll[timed][: len(steps[timed])]) if roll else float("nan")
    return {
        "row": res["row"],
        "first_step_s": steps[0],
        "median_step_s": statistics.median(steps[timed]),
        "completions_s": n * len(steps[timed]) / t,
        "tokens_s": sum(toks[timed]) / t,
        "rollout_share": r / t,
        "peak_rss_mb": res["peak_rss_mb"],
        "first_loss": res["first_loss"],
        "mean_tokens": sum(toks) / len(toks) / n,
        "threads": res["threads"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="Untimed steps at the start of each row.")
    ap.add_argument("--malloc", default="auto", help="auto, tcmalloc, jemalloc or system (see preflab.launch)")
    ap.add_argument("--prompts", type=int, default=2, help="Prompts per step.")
    ap.add_argument("--g", type=int, default=4, help="Completions per prompt.")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.9)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--layout", default="prefix_shared", help="preflab's batch layout (padded, prefix_shared).")
    ap.add_argument(
        "--bf16", action="store_true", help="bf16 autocast in both tools (a CPU with AMX / AVX512-BF16); default fp32."
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker (0 = torch's default).")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--json", type=Path, default=None, help="Also write the raw results here.")
    ap.add_argument("--worker-out", default=None)
    ap.add_argument("--row", default=None)
    args = ap.parse_args()
    if args.worker_out:
        worker(args)
        return
    from preflab.launch import active_allocator, allocator_env, reexec

    reexec(allocator_env({**os.environ, "PREFLAB_MALLOC": args.malloc}))  # once: the workers inherit it
    print(f"{machine_line()}, malloc {active_allocator()}")
    n = args.prompts * args.g
    print(
        f"SmolLM2-135M-Instruct {'bf16 autocast' if args.bf16 else 'fp32'}, "
        f"{args.prompts} prompts × G={args.g} = {n} completions per step, "
        f"{args.max_new_tokens} new tokens max, T={args.temperature}, {args.steps} steps ({args.warmup} untimed)"
    )
    passthrough = [
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--prompts",
        str(args.prompts),
        "--g",
        str(args.g),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--temperature",
        str(args.temperature),
        "--lr",
        str(args.lr),
        "--threads",
        str(args.threads),
        "--layout",
        args.layout,
        *(["--bf16"] if args.bf16 else []),
    ]
    results = []
    for row in args.rows.split(","):
        res = run_worker(
            __file__,
            [*passthrough, "--row", row],
            args.timeout,
            env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
        )
        res.setdefault("row", row)
        results.append(res)
        s = summarize(res, n)
        print(json.dumps(s))
    head = f"{'row':<14}{'compl/s':>9}{'tok/s':>8}{'rollout%':>9}{'step s':>8}{'1st s':>8}{'RSS MB':>8}{'1st loss':>10}"
    print(head)
    for res in results:
        s = summarize(res, n)
        if "error" in s:
            print(f"{s['row']:<14} error: {s['error']}")
            continue
        print(
            f"{s['row']:<14}{s['completions_s']:>9.2f}{s['tokens_s']:>8.1f}{100 * s['rollout_share']:>8.0f}%"
            f"{s['median_step_s']:>8.2f}{s['first_step_s']:>8.2f}{s['peak_rss_mb']:>8.0f}{s['first_loss']:>10.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
