"""DPO training throughput: preflab's trainer vs TRL's ``DPOTrainer``, and both vs the CPU's matmul peak.

    .venv/bin/python bench/dpo_throughput.py                       # preflab + TRL, one epoch of 64 pairs each
    .venv/bin/python bench/dpo_throughput.py --steps 4 --configs preflab,trl
    .venv/bin/python bench/dpo_throughput.py --lora                # adds the LoRA rows

Same data, hyperparameters and initial weights for every row: SmolLM2-135M-Instruct (fp32 master weights),
``--pairs`` seeded synthetic pairs rendered through its chat template (prompts ~60 tokens, completions ~50;
both trainers tokenise the same strings, and the bench checks that their token ids are identical), batch 8,
β 0.1, AdamW lr 1e-6, no warm-up, linear decay, gradient clipping at 1.0, max length 1024, seed 0, and the
same batch order (TRL reads the dataset sequentially in the order preflab's seeded schedule draws it).
Each row runs in its own subprocess, so its peak RSS is its own, under the memory allocator ``--malloc``
picks for every row alike (default ``auto``: TCMalloc or jemalloc when installed, as the ``preflab`` command
does, see :mod:`preflab.launch`; ``--malloc system`` = glibc's malloc); the ``malloc`` column says which.

Columns: ``setup s`` = from the loaded model to the first training forward (tokenisation, reference copy
or reference log-prob pass, optimizer; for a ``-compile`` row also compiling, from an empty inductor cache,
the graphs the reference pass runs, which are the training graphs); step times are wall-clock between
optimizer-step ends (the first step is reported apart, as warm-up); ``pairs/s`` = batch / median step;
``end-to-end pairs/s`` = pairs of the run / (setup + every step), the rate that counts a reference pass; ``tokens/s``
= non-padding
tokens the policy reads per second (prefix sharing reads each prompt once, so it reads fewer tokens per
pair); ``MFU`` = useful model FLOPs per second / the matmul peak measured in this run (the best n×n
product, n = 512…2048, on all threads). Useful FLOPs per step: 3× the forward FLOPs of the policy (forward +
backward; 2× for LoRA, whose frozen weights need no weight gradient) + 1× forward of the reference when it
runs inside the step. Forward FLOPs = 2·N·tokens (N = decoder weights, embedding and lm-head excluded) +
2·d·V per completion token (the lm-head is only needed there) + 4·d·layers per attended (query, key) pair.
Recomputation (gradient checkpointing, the chunked head's backward), padding, and lm-head work on prompt
positions (TRL's fused head scores every position off Triton devices) are not useful work and not counted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from preflab.launch import ALLOCATORS, active_allocator, allocator_env

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    decoder_params,
    forward_flops,
    load_average,
    machine_line,
    matmul_peak,
    peak_device,
    peak_gpu_mb,
    peak_rss_mb,
    run_worker,
    step_stats,
    synthetic_pairs,
    table,
    triangle,
    write_result,
)

MODEL = "smollm2-135m-instruct"
LR = 1e-6
BETA = 0.1
MAX_LENGTH = 1024
LORA = {"r": 16, "alpha": 32.0, "dropout": 0.0}

# name -> (tool, options). preflab's best settings: prompt encoded once per pair, reference log-probs cached
# by one pass before training, bf16 autocast, chunked lm-head. TRL: its documented defaults with bf16 on
# (gradient checkpointing, a reference model run every step), its fastest documented combination without
# compilation (no gradient checkpointing, reference log-probs precomputed), and that plus the Trainer's
# ``torch_compile`` (its steady steps are faster; it recompiles for new batch shapes, minutes on this CPU).
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "preflab": ("preflab", {"layout": "prefix_shared", "reference": "cached"}),
    "preflab-compile": ("preflab", {"layout": "prefix_shared", "reference": "cached", "compile": True}),
    "preflab-lowmem": ("preflab", {"layout": "prefix_shared", "reference": "cached", "compile": True, "chunk": 256}),
    "preflab-lean": ("preflab", {"layout": "prefix_shared", "reference": "cached", "micro": 2}),
    "preflab-padded-cached": ("preflab", {"layout": "padded", "reference": "cached"}),
    "preflab-packed": ("preflab", {"layout": "packed", "reference": "cached"}),
    "preflab-baseline": ("preflab", {"layout": "padded", "reference": "frozen_copy"}),
    "trl": ("trl", {"gradient_checkpointing": True, "precompute": False}),
    "trl-fast": ("trl", {"gradient_checkpointing": False, "precompute": True}),
    "preflab-lora": ("preflab", {"layout": "prefix_shared", "reference": "cached", "lora": True}),
    "trl-lora": ("trl", {"gradient_checkpointing": True, "precompute": False, "lora": True}),
    "preflab-lora-compile": (
        "preflab",
        {"layout": "prefix_shared", "reference": "cached", "lora": True, "compile": True},
    ),
    "trl-lora-fast": ("trl", {"gradient_checkpointing": False, "precompute": True, "lora": True}),
    # TrainingArguments.torch_compile: the Trainer compiles the whole model (inductor, default mode)
    "trl-compile": ("trl", {"gradient_checkpointing": False, "precompute": True, "compile": True}),
    "trl-lora-compile": ("trl", {"gradient_checkpointing": False, "precompute": True, "lora": True, "compile": True}),
}
LORA_CONFIGS = ("preflab-lora", "preflab-lora-compile", "trl-lora", "trl-lora-fast")
DEFAULT_CONFIGS = "preflab,preflab-compile,preflab-baseline,trl,trl-fast"


# ------------------------------------------------------------------ worker side


class StepClock:
    """Wall-clock times of the first training forward (the first decoder call with autograd on) and of
    every optimizer-step end."""

    def __init__(self, decoder: torch.nn.Module):
        self.first_forward: float | None = None
        self.armed = True  # False while a reference pass may run forwards with autograd on (not a training step)
        self.step_ends: list[float] = []
        self.first_metrics: dict[str, float] = {}
        self._handle = decoder.register_forward_pre_hook(self._pre)

    def _pre(self, module: Any, args: Any) -> None:
        if self.first_forward is None and self.armed and torch.is_grad_enabled():
            self.first_forward = time.perf_counter()

    def step_end(self, metrics: dict[str, Any] | None = None) -> None:
        self.step_ends.append(time.perf_counter())
        if len(self.step_ends) == 1 and metrics:
            keys = ("loss", "logps/chosen", "logps/rejected")
            self.first_metrics = {k: float(metrics[k]) for k in keys if k in metrics}

    def step_times(self) -> list[float]:
        marks = [self.first_forward, *self.step_ends]
        return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def ids_digest(rows: list[tuple[list[int], list[int], list[int]]]) -> str:
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def run_preflab(
    opts: dict[str, Any],
    pairs: list[dict[str, str]],
    model: Any,
    tok: Any,
    clock: StepClock,
    steps: int,
    batch: int,
    out_dir: str,
) -> None:
    from preflab.config import RunConfig
    from preflab.data.records import PreferencePair
    from preflab.training import train

    records = [PreferencePair(prompt=p["prompt"], chosen=p["chosen"], rejected=p["rejected"]) for p in pairs]
    micro = opts.get("micro", batch)  # pairs per forward; grad_accum makes up the batch of an optimizer step
    if batch % micro:
        raise SystemExit(f"batch {batch} is not a multiple of the micro-batch {micro}")
    cfg = RunConfig.model_validate(
        {
            "seed": 0,
            "output_dir": out_dir,
            "model": {"name_or_path": MODEL},
            "train": {
                "lr": LR,
                "batch_size": micro,
                "grad_accum": batch // micro,
                "max_steps": steps,
                "warmup_steps": 0,
                "scheduler": "linear",
                "weight_decay": 0.0,
                "max_grad_norm": 1.0,
                "bf16": True,
                "max_length": MAX_LENGTH,
                "chat_template": False,
                "layout": opts["layout"],
                "progress": False,
                "save_final": False,
                **({"compile": True} if opts.get("compile") else {}),
                **({"logprob_chunk_size": opts["chunk"]} if "chunk" in opts else {}),
            },
            "objective": {"name": "dpo", "params": {"beta": BETA}},
            "reference": {"mode": opts["reference"]},
            "lora": {"enabled": bool(opts.get("lora")), **LORA},
        }
    )
    import preflab.training.loop as loop

    build = loop.build_parts

    def build_then_arm(*args: Any, **kwargs: Any) -> Any:
        # a compiled policy scores its reference cache through the training graph (autograd on): that pass,
        # and the compilation it triggers, belong to setup, not to the first step
        parts = build(*args, **kwargs)
        clock.armed = True
        return parts

    clock.armed = False
    loop.build_parts = build_then_arm
    try:
        train(cfg, records=records, model=model, tokenizer=tok, callbacks=[lambda step, m: clock.step_end(m)])
    finally:
        loop.build_parts = build


def run_trl(
    opts: dict[str, Any],
    pairs: list[dict[str, str]],
    model: Any,
    tok: Any,
    clock: StepClock,
    steps: int,
    batch: int,
    out_dir: str,
) -> str:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            clock.step_ends.append(time.perf_counter())

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if state.global_step == 1 and logs and not clock.first_metrics:
                clock.first_metrics = {
                    k: float(logs[k]) for k in ("loss", "logps/chosen", "logps/rejected") if k in logs
                }

    peft_config = None
    if opts.get("lora"):
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=LORA["r"],
            lora_alpha=LORA["alpha"],
            lora_dropout=LORA["dropout"],
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    args = DPOConfig(
        output_dir=out_dir,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        max_steps=steps,
        learning_rate=LR,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=BETA,
        loss_type=["sigmoid"],
        max_length=MAX_LENGTH,
        bf16=True,
        gradient_checkpointing=opts["gradient_checkpointing"],
        precompute_ref_log_probs=opts["precompute"],
        torch_compile=bool(opts.get("compile")),
        train_sampling_strategy="sequential",
        seed=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[Clock()],
    )
    ds = trainer.train_dataset
    digest = ids_digest([(r["prompt_ids"], r["chosen_ids"], r["rejected_ids"]) for r in ds])
    trainer.train()
    return digest


def step_work(
    lengths: list[tuple[int, int, int]],
    order: list[int],
    batch: int,
    steps: int,
    shared: bool,
) -> list[dict[str, int]]:
    """Per step: tokens the policy reads, completion tokens (lm-head positions), attended (q, k) pairs."""
    work = []
    for s in range(steps):
        rows = [order[(s * batch + i) % len(order)] for i in range(batch)]
        tokens = heads = attended = 0
        for r in rows:
            p, c, j = lengths[r]
            heads += c + j
            if shared:  # [prompt, chosen, rejected]: each completion sees the prompt and itself
                tokens += p + c + j
                attended += triangle(p) + c * p + triangle(c) + j * p + triangle(j)
            else:
                tokens += 2 * p + c + j
                attended += triangle(p + c) + triangle(p + j)
        work.append({"tokens": tokens, "heads": heads, "attended": attended})
    return work


def worker(args: argparse.Namespace) -> None:
    from preflab.data.tokenize import TokenizeOptions, Tokenizer
    from preflab.models import load_model, load_tokenizer
    from preflab.training.schedule import ShuffledStream

    tool, opts = CONFIGS[args.config]
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    tok = load_tokenizer(MODEL)
    pairs = synthetic_pairs(tok, n=args.pairs, seed=0)
    order = ShuffledStream(len(pairs), seed=0).rows(0, len(pairs))  # preflab's first-epoch order
    tk = Tokenizer(tok, TokenizeOptions(max_length=MAX_LENGTH, chat_template=False))
    exs = [tk.example(_pair(p), i) for i, p in enumerate(pairs)]
    lengths = [(len(e.prompt_ids), len(e.completions[0]), len(e.completions[1])) for e in exs]
    digest = ids_digest([(exs[i].prompt_ids, *map(list, exs[i].completions)) for i in order])

    model = load_model(MODEL)
    clock = StepClock(model.get_decoder())
    cfg = model.config
    n_body = decoder_params(model)
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as out_dir:
        if tool == "preflab":
            run_preflab(opts, pairs, model, tok, clock, args.steps, args.batch, out_dir)
        else:
            digest = run_trl(opts, [pairs[i] for i in order], model, tok, clock, args.steps, args.batch, out_dir)
    t_end = time.perf_counter()
    shared = tool == "preflab" and opts["layout"] == "prefix_shared"
    work = step_work(lengths, order, args.batch, args.steps, shared)
    train_mult = 2 if opts.get("lora") else 3
    ref_in_step = not (opts.get("reference") == "cached" or opts.get("precompute"))
    flops = [
        (train_mult + ref_in_step)
        * forward_flops(
            n_body, cfg.hidden_size, cfg.vocab_size, cfg.num_hidden_layers, w["tokens"], w["heads"], w["attended"]
        )
        for w in work
    ]
    write_result(
        args.worker_out,
        {
            "config": args.config,
            "tool": tool,
            "options": opts,
            "pairs": args.pairs,
            "batch": args.batch,
            "setup_s": (clock.first_forward or t_end) - t0,
            "total_s": t_end - t0,
            "step_times": clock.step_times(),
            "step_tokens": [w["tokens"] for w in work],
            "step_flops": flops,
            "first": clock.first_metrics,
            "ids_digest": digest,
            "peak_rss_mb": peak_rss_mb(),
            "peak_gpu_mb": peak_gpu_mb(),
            "rss_after_load_mb": rss_before,
            "threads": torch.get_num_threads(),
            "malloc": active_allocator(),
        },
    )


def _pair(p: dict[str, str]) -> Any:
    from preflab.data.records import PreferencePair

    return PreferencePair(prompt=p["prompt"], chosen=p["chosen"], rejected=p["rejected"])


# ------------------------------------------------------------------ parent side


def summarize(res: dict[str, Any], peaks: dict[str, float]) -> dict[str, Any]:
    times = res["step_times"]
    timed = times[1:] if len(times) > 1 else times
    stats = step_stats(timed)
    n = len(times)
    timed_flops = res["step_flops"][1:n] if n > 1 else res["step_flops"][:n]
    timed_tokens = res["step_tokens"][1:n] if n > 1 else res["step_tokens"][:n]
    busy = sum(timed)
    row = {
        "config": res["config"],
        "steps": n,
        "setup_s": res["setup_s"],
        "first_step_s": times[0] if times else 0.0,
        "median_s": stats["median"],
        "iqr_s": stats["iqr"],
        "min_s": stats["min"],
        "pairs_s": res["batch"] / stats["median"],
        "epoch_pairs_s": res["batch"] * n / (res["setup_s"] + sum(times)),
        "tokens_s": sum(timed_tokens) / busy,
        "rss_mb": res["peak_rss_mb"],
        "gpu_mb": res.get("peak_gpu_mb", 0.0),
        "mfu_bf16": sum(timed_flops) / busy / peaks["bf16"],
        "mfu_fp32": sum(timed_flops) / busy / peaks["fp32"],
        "gflops": sum(timed_flops) / busy / 1e9,
        "malloc": res.get("malloc", "?"),
    }
    row.update({f"first_{k}": v for k, v in res["first"].items()})
    return row


def run_row(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One row in its own process (a compiling row gets an empty inductor cache: a cold compile)."""
    load = load_average()[0]
    with tempfile.TemporaryDirectory(prefix="bench-inductor-") as cache:
        # every row, TRL's too, runs under the allocator --malloc picks (as the `preflab` command would)
        env = allocator_env({**os.environ, "PREFLAB_MALLOC": args.malloc}) or {}
        # no row swaps layers for kernels downloaded from the Hub (transformers' default when `kernels` is
        # installed and a GPU is present): both tools run the same model code, offline machines included
        env.setdefault("USE_HUB_KERNELS", os.environ.get("USE_HUB_KERNELS", "NO"))
        if CONFIGS[name][1].get("compile"):
            env["TORCHINDUCTOR_CACHE_DIR"] = cache
        res = run_worker(
            __file__,
            [
                "--config",
                name,
                "--pairs",
                str(args.pairs),
                "--batch",
                str(args.batch),
                "--steps",
                str(args.steps),
                "--threads",
                str(args.threads),
            ],
            timeout=args.timeout,
            env=env,
        )
    res.setdefault("config", name)
    res["load_before"], res["load_after"] = load, load_average()[0]
    return res


def parent(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    if args.lora:
        names += [c for c in LORA_CONFIGS if c not in names]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; known: {', '.join(CONFIGS)}")
    print(
        f"# DPO throughput, {MODEL}, {args.pairs} pairs, batch {args.batch}, {args.steps} steps per row, "
        f"best of {args.repeats} interleaved repetition(s) by median step"
    )
    print(f"machine: {machine_line()}")
    dev = peak_device()
    sizes = (2048, 4096, 8192) if dev == "cuda" else (512, 1024, 2048)
    (bf16, n16), (fp32, n32) = matmul_peak(torch.bfloat16, sizes, dev), matmul_peak(torch.float32, sizes, dev)
    peaks = {"bf16": bf16, "fp32": fp32}
    print(
        f"matmul peak on {dev} (best n×n·n×n of n = {', '.join(map(str, sizes))}; {torch.get_num_threads()} threads): "
        f"bf16 {bf16 / 1e9:.1f} GFLOP/s (n = {n16}), fp32 {fp32 / 1e9:.1f} GFLOP/s (n = {n32})",
        flush=True,
    )
    exact = fp32_first_batch(args.pairs, args.batch)
    print(
        f"first batch, fp32 full log-softmax (ground truth): logps/chosen {exact['logps/chosen']:.4f}, "
        f"logps/rejected {exact['logps/rejected']:.4f}",
        flush=True,
    )
    attempts: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for rep in range(args.repeats):  # interleaved, so every tool meets the same share of a busy machine
        for name in names:
            res = run_row(name, args)
            attempts[name].append(res)
            if "error" in res:
                print(f"{name}: FAILED ({res['error']})\n{res.get('log', '')}", flush=True)
                continue
            row = summarize(res, peaks)
            print(
                f"{name} #{rep + 1}: median step {row['median_s']:.2f} s, {row['pairs_s']:.2f} pairs/s, peak RSS "
                f"{row['rss_mb']:.0f} MiB (load average {res['load_before']:.2f} / {res['load_after']:.2f})",
                flush=True,
            )
    # MFU is quoted against the best peak seen (before or after the rows): on a shared machine the matmul
    # peak itself varies, and the lower reading would flatter every row's MFU
    (bf16_after, _), (fp32_after, _) = matmul_peak(torch.bfloat16, sizes, dev), matmul_peak(torch.float32, sizes, dev)
    peaks = {"bf16": max(bf16, bf16_after), "fp32": max(fp32, fp32_after)}
    results, rows = [], []
    for name in names:
        ok = [r for r in attempts[name] if "error" not in r]
        if not ok:
            continue
        best = min(ok, key=lambda r: step_stats(r["step_times"][1:] or r["step_times"])["median"])
        results.append(best)
        row = summarize(best, peaks)
        row["load"] = f"{best['load_before']:.2f} / {best['load_after']:.2f}"
        rows.append(row)
    print()
    print(
        table(
            rows,
            [
                ("config", "config"),
                ("steps", "steps"),
                ("setup_s", "setup s"),
                ("first_step_s", "1st step s"),
                ("median_s", "step median s"),
                ("iqr_s", "step IQR s"),
                ("min_s", "step min s"),
                ("pairs_s", "pairs/s"),
                ("epoch_pairs_s", "end-to-end pairs/s"),
                ("tokens_s", "tokens/s"),
                ("rss_mb", "peak RSS MiB"),
                *([("gpu_mb", "peak GPU MiB")] if dev == "cuda" else []),
                ("gflops", "GFLOP/s"),
                ("mfu_bf16", "MFU bf16"),
                ("mfu_fp32", "MFU fp32"),
                ("malloc", "malloc"),
                ("load", "load before / after"),
            ],
        )
    )
    print()
    print("first step (same batch, initial weights):")
    print(
        table(
            rows,
            [
                ("config", "config"),
                ("first_loss", "DPO loss"),
                ("first_logps/chosen", "logps/chosen"),
                ("first_logps/rejected", "logps/rejected"),
            ],
        )
    )
    print(_checks(results, rows, exact))
    print(
        f"\nmatmul peak re-measured after the rows: bf16 {bf16_after / 1e9:.1f}, fp32 {fp32_after / 1e9:.1f} "
        f"GFLOP/s; MFU columns use the higher of the two readings (bf16 {peaks['bf16'] / 1e9:.1f}, fp32 "
        f"{peaks['fp32'] / 1e9:.1f}); load average now {' '.join(f'{x:.2f}' for x in load_average())}"
    )
    if args.save:
        Path(args.save).write_text(json.dumps({"peaks": peaks, "attempts": attempts, "rows": rows}, indent=1))


def fp32_first_batch(n_pairs: int, batch: int) -> dict[str, float]:
    """Mean chosen / rejected log-probs of the first training batch in fp32 with a full log-softmax."""
    from preflab.data.tokenize import TokenizeOptions, Tokenizer
    from preflab.models import load_model, load_tokenizer
    from preflab.models.logprobs import naive_sequence_logprobs
    from preflab.training.schedule import ShuffledStream

    tok = load_tokenizer(MODEL)
    pairs = synthetic_pairs(tok, n=n_pairs, seed=0)
    rows = ShuffledStream(len(pairs), seed=0).rows(0, batch)
    tk = Tokenizer(tok, TokenizeOptions(max_length=MAX_LENGTH, chat_template=False))
    model = load_model(MODEL)
    out = {}
    for k, key in enumerate(("logps/chosen", "logps/rejected")):
        seqs = [(ex.prompt_ids, ex.completions[k]) for ex in (tk.example(_pair(pairs[r]), r) for r in rows)]
        width = max(len(p) + len(c) for p, c in seqs)
        ids, comp, attn = (torch.zeros(len(seqs), width, dtype=torch.long) for _ in range(3))
        for i, (p, c) in enumerate(seqs):
            ids[i, : len(p) + len(c)] = torch.tensor(p + c)
            comp[i, len(p) : len(p) + len(c)] = 1
            attn[i, : len(p) + len(c)] = 1
        with torch.no_grad():
            out[key] = naive_sequence_logprobs(model, ids, comp, attn).mean().item()
    return out


def _checks(results: list[dict[str, Any]], rows: list[dict[str, Any]], exact: dict[str, float]) -> str:
    ok = [r for r in results if "error" not in r]
    lines = []
    for r in rows:
        devs = [abs(r[f"first_{k}"] - exact[k]) / abs(exact[k]) for k in exact if f"first_{k}" in r]
        if devs:
            lines.append(
                f"{r['config']}: first-step log-probs vs fp32 ground truth: relative error "
                f"{max(devs):.2e} (bf16 autocast)"
            )
    digests = {r["ids_digest"] for r in ok}
    lines.append(f"token ids identical across tools: {'yes' if len(digests) == 1 else 'NO ' + str(digests)}")
    by = {r["config"]: r for r in rows}
    for lora in (False, True):
        pre = [by[c] for c in by if c.startswith("preflab") and ("lora" in c) == lora]
        trl = [by[c] for c in by if c.startswith("trl") and ("lora" in c) == lora]
        if pre and trl and "first_loss" in pre[0] and "first_loss" in trl[0]:
            lines += _compare(pre[0], trl)
    return "\n".join(lines)


def _compare(a: dict[str, Any], trl: list[dict[str, Any]]) -> list[str]:
    """The correctness check (first-step loss and log-probs vs TRL's) and the targets, for preflab row ``a``."""
    b = trl[0]
    dl = abs(a["first_loss"] - b["first_loss"])
    lines = [
        f"first-step loss {a['config']} {a['first_loss']:.6f} vs {b['config']} {b['first_loss']:.6f}: "
        f"|Δ| = {dl:.2e} ({'OK' if dl <= 1e-3 else 'FAIL'}, tolerance 1e-3; at the initial weights the policy "
        "is its reference, so this checks that each tool's reference pass reproduces its policy pass; the "
        "log-prob lines below compare the two tools' numerics)"
    ]
    for k in ("logps/chosen", "logps/rejected"):
        x, y = a.get(f"first_{k}"), b.get(f"first_{k}")
        if x is not None and y is not None:
            lines.append(
                f"first-step {k}: {a['config']} {x:.4f} vs {b['config']} {y:.4f}, |Δ| = {abs(x - y):.3g} "
                f"(relative {abs(x - y) / abs(y):.2e})"
            )
    fast = max(trl, key=lambda r: r["epoch_pairs_s"])
    lean = min(trl, key=lambda r: r["rss_mb"])
    steady = max(trl, key=lambda r: r["pairs_s"])
    lines.append(
        f"targets for {a['config']}: end-to-end pairs/s {a['epoch_pairs_s'] / fast['epoch_pairs_s']:.2f}× "
        f"{fast['config']} (the fastest TRL; target ≥ 3×); steady pairs/s {a['pairs_s'] / steady['pairs_s']:.2f}× "
        f"{steady['config']}; peak RSS {a['rss_mb'] / lean['rss_mb']:.2f}× {lean['config']} (the leanest TRL; "
        f"target ≤ 0.6×) and {a['rss_mb'] / fast['rss_mb']:.2f}× {fast['config']}; MFU {a['mfu_bf16']:.1%} of the "
        "bf16 peak (target ≥ 30%)"
    )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"comma-separated rows among {', '.join(CONFIGS)}")
    ap.add_argument("--lora", action="store_true", help="also run the LoRA rows")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per row (8 = one epoch of 64 pairs)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per row")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for every row and the peak (0 = all)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="interleaved repetitions of the row list; each row reports its fastest (on a shared machine)",
    )
    ap.add_argument("--save", help="also write every raw number as JSON here")
    ap.add_argument(
        "--malloc",
        default="auto",
        choices=["auto", "system", *ALLOCATORS],
        help="memory allocator of every row (auto: TCMalloc or jemalloc when installed, as the "
        "`preflab` command picks; see preflab.launch)",
    )
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_out:
        worker(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
