"""Shared helpers of the benchmarks in ``bench/``: hardware peak, machine load, per-process peak RSS,
seeded synthetic preference data, FLOP counts, step-time statistics and plain-text tables.

Benchmarks measure each tool in its own subprocess (``run_worker``), so that peak RSS is that tool's
alone (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the worker, which counts everything the worker
did: imports, model loading, training).
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

# ------------------------------------------------------------------ the machine


def load_average() -> tuple[float, float, float]:
    """1-, 5- and 15-minute load averages (other processes competing for the CPU)."""
    return os.getloadavg()


def machine_line() -> str:
    """One line naming the CPU, its cores and torch's thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"load average {' '.join(f'{x:.2f}' for x in load_average())}"
    )


def peak_device() -> str:
    """Where the trainers run, so where the MFU peak is measured: the first CUDA GPU when present."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def peak_gpu_mb() -> float:
    """Peak memory the CUDA caching allocator handed out in this process, in MiB (0 without a GPU)."""
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0


def matmul_peak(
    dtype: torch.dtype, sizes: Sequence[int] = (512, 1024, 2048), device: str = "cpu", budget_s: float = 1.5
) -> tuple[float, int]:
    """Measured matmul peak in FLOP/s on all threads, and the size n that reached it: the best timing of an
    (n×n)·(n×n) product (2n³ FLOPs) over ``sizes``, each repeated for about ``budget_s`` seconds. Small
    products that fit in cache often run faster than large ones, so several sizes are tried; the best one
    is the hardware's practical limit that MFU is quoted against."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    best, best_n = 0.0, 0
    for n in sizes:
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        fastest, spent = float("inf"), 0.0
        while spent < budget_s:
            if device != "cpu":
                torch.cuda.synchronize()
            t = time.perf_counter()
            a @ b
            if device != "cpu":
                torch.cuda.synchronize()
            took = time.perf_counter() - t
            fastest, spent = min(fastest, took), spent + took
        if 2.0 * n**3 / fastest > best:
            best, best_n = 2.0 * n**3 / fastest, n
    return best, best_n


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def current_rss_mb() -> float:
    """Resident set size now, in MiB (from /proc/self/statm)."""
    with open("/proc/self/statm", encoding="utf-8") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# ------------------------------------------------------------------ workers


def run_worker(
    script: str | Path, args: Sequence[str], timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``python script --worker-out FILE *args`` in a fresh process and return the JSON it wrote.

    A worker that fails or times out yields ``{"error": ...}`` with the tail of its output, so one broken
    tool does not hide the others' numbers.
    """
    with tempfile.TemporaryDirectory(prefix="preflab-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(script), "--worker-out", str(out), *args]
        env = {
            **os.environ,
            "TOKENIZERS_PARALLELISM": "false",
            "TRANSFORMERS_VERBOSITY": "error",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
            **(env or {}),
        }
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            tail = (exc.stdout or "")[-1500:] if isinstance(exc.stdout, str) else ""
            return {"error": f"timed out after {timeout:.0f} s", "log": tail}
        if proc.returncode != 0 or not out.is_file():
            return {"error": f"exit code {proc.returncode}", "log": (proc.stdout + proc.stderr)[-3000:]}
        return json.loads(out.read_text(encoding="utf-8"))


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(result, indent=1), encoding="utf-8")


# ------------------------------------------------------------------ data

WORDS = (
    "the a model answer question data because which would could should value policy reward human assistant "
    "preference learning gradient example simple clear helpful honest safe careful detail explain reason step "
    "first then finally result number list code python function return error river mountain history science "
    "music kitchen recipe travel weather garden letter summary story poem review budget plan schedule health"
).split()


def _words_to_tokens(tokenizer: Any, rng: random.Random, target: int, render: Any) -> str:
    """Grow a sentence word by word until ``render(text)`` tokenises to at least ``target`` tokens."""
    words: list[str] = []
    while True:
        words.append(rng.choice(WORDS))
        text = " ".join(words).capitalize() + "."
        if len(tokenizer(render(text), add_special_tokens=False)["input_ids"]) >= target:
            return text


def synthetic_pairs(
    tokenizer: Any,
    n: int = 64,
    prompt_tokens: int = 60,
    completion_tokens: int = 50,
    spread: float = 0.15,
    seed: int = 0,
) -> list[dict[str, str]]:
    """``n`` seeded preference pairs as chat-template-rendered text (TRL's standard text format).

    ``prompt`` is the user message rendered through the tokenizer's chat template with the generation
    prompt (system prompt included, as the template adds it); ``chosen`` / ``rejected`` are the assistant
    texts without the end-of-turn token, which both trainers append as EOS. Token lengths are drawn
    uniformly within ±``spread`` of ``prompt_tokens`` (whole rendered prompt) and ``completion_tokens``
    (completion + EOS), so batches need real padding.
    """
    rng = random.Random(seed)

    def render_prompt(text: str) -> str:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )

    def draw(mean: int) -> int:
        return rng.randint(round(mean * (1 - spread)), round(mean * (1 + spread)))

    pairs = []
    for _ in range(n):
        user = _words_to_tokens(tokenizer, rng, draw(prompt_tokens), render_prompt)
        chosen = _words_to_tokens(tokenizer, rng, draw(completion_tokens) - 1, lambda t: t)
        rejected = _words_to_tokens(tokenizer, rng, draw(completion_tokens) - 1, lambda t: t)
        pairs.append({"prompt": render_prompt(user), "chosen": chosen, "rejected": rejected})
    return pairs


# ------------------------------------------------------------------ FLOPs


def decoder_params(model: torch.nn.Module) -> int:
    """Parameters applied as matmuls to every token: all weights except the input embedding and the
    lm-head (the head is counted per position it is applied to, see :func:`forward_flops`)."""
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    skip = {id(embed), id(head)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def forward_flops(
    n_body: int, hidden: int, vocab: int, layers: int, tokens: int, head_positions: int, attended_pairs: int
) -> float:
    """Useful forward FLOPs: 2·N_body per token (every matmul of the decoder), 2·d·V per position the
    lm-head is applied to, and 4·d per (query, key) pair attended per layer (QKᵀ and AV)."""
    return 2.0 * n_body * tokens + 2.0 * hidden * vocab * head_positions + 4.0 * hidden * layers * attended_pairs


def triangle(n: int) -> int:
    """(query, key) pairs of causal attention over n tokens."""
    return n * (n + 1) // 2


# ------------------------------------------------------------------ statistics and tables


def step_stats(times: Sequence[float]) -> dict[str, float]:
    """Median, interquartile range, min and max of step times (seconds)."""
    if not times:
        return {"median": float("nan"), "iqr": float("nan"), "min": float("nan"), "max": float("nan")}
    if len(times) >= 2:
        q = statistics.quantiles(times, n=4, method="inclusive")
        iqr = q[2] - q[0]
    else:
        iqr = 0.0
    return {"median": statistics.median(times), "iqr": iqr, "min": min(times), "max": max(times)}


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows`` (dicts) with ``columns`` as (key, header) pairs; floats get 3
    significant decimals."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return "n/a"
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
        return str(v)

    cells = [[fmt(r.get(k, "")) for k, _ in columns] for r in rows]
    heads = [h for _, h in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join([line, sep, *body])
