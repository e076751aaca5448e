"""``preflab sample``: a task suite (or a prompts file) -> completions JSONL with gold scores."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError, DataError

err_console = Console(stderr=True)


def read_prompts(path: Path) -> list[tuple[str | None, object]]:
    """(id, prompt) pairs from a .jsonl file (``prompt``: text or messages; optional ``id``) or a
    text file with one prompt per non-empty line."""
    if not path.is_file():
        raise DataError("prompts file not found", file=str(path))
    out: list[tuple[str | None, object]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if path.suffix != ".jsonl":
                out.append((f"prompt-{len(out)}", line.rstrip("\n")))
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", file=str(path), line=lineno) from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str | list):
                raise DataError("needs a 'prompt' (text or message list)", file=str(path), line=lineno, field="prompt")
            out.append((str(row.get("id", f"prompt-{len(out)}")), row["prompt"]))
    return out


def sample_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Completions JSONL to write."),
    suite: str = typer.Option("default", "--suite", "-s", help="Task suite or family name."),
    n: int = typer.Option(64, "--n", min=1, help="Number of prompts drawn from the suite."),
    prompts: Path | None = typer.Option(None, "--prompts", help="Prompts file (.jsonl or .txt) instead of a suite."),
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Model name, path or HF id."),
    num_samples: int = typer.Option(2, "--num-samples", "-k", min=1, help="Completions per prompt."),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.7, "--temperature", min=0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed", help="Seeds the tasks and the sampling."),
    batch_size: int = typer.Option(
        32,
        "--batch-size",
        min=1,
        help="Sequences decoded at once (the rollout engine's rows; generate: this // k prompts per call).",
    ),
    logprobs: bool = typer.Option(False, "--logprobs", help="Also record each completion's log-prob."),
    backend: str = typer.Option("auto", "--backend", help="auto, hf or vllm."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
) -> None:
    """Sample completions for a task suite (with gold scores) or a prompts file."""
    from ..feedback.samples import PromptSamples, write_samples
    from ..feedback.tasks import get_suite
    from ..generation import SamplingParams, make_backend, vllm_available
    from ..models import load_model, load_tokenizer, resolve_model
    from ..models.loading import is_adapter_dir

    if prompts is not None:
        items = [(pid, p, None) for pid, p in read_prompts(prompts)]
    else:
        items = [(t.id, t.prompt, t) for t in get_suite(suite).tasks(n, seed)]
    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        n=num_samples,
        batch_size=batch_size,
        return_logprobs=logprobs,
    )
    t0 = time.perf_counter()
    with err_console.status(f"loading {model}"):
        if backend == "vllm" and is_adapter_dir(model):
            raise ConfigError(
                f"{model} is a LoRA adapter; the vllm backend needs a full model (train with train.merge_lora: "
                "true, or use --backend hf)",
                field="backend",
            )
        if backend == "vllm" or (backend == "auto" and vllm_available() and not is_adapter_dir(model)):
            sampler = make_backend(backend, model_path=resolve_model(model), seed=seed)
        else:
            sampler = make_backend(
                backend,
                model=load_model(model, trust_remote_code=trust_remote_code, device="auto"),
                tokenizer=load_tokenizer(model, trust_remote_code=trust_remote_code),
            )
    t1 = time.perf_counter()
    results = _sample_with_progress(sampler, [p for _, p, _ in items], params)
    t2 = time.perf_counter()
    rows = []
    for (pid, prompt, task), comps in zip(items, results, strict=True):
        rows.append(
            PromptSamples(
                prompt=prompt,
                completions=[c.text for c in comps],
                id=pid,
                task=task,
                gold_scores=[task.score(c.text) for c in comps] if task is not None else None,
                num_tokens=[c.num_tokens for c in comps],
                finish_reasons=[c.finish_reason for c in comps],
                logprobs=[c.logprob for c in comps] if logprobs else None,
            )
        )
    write_samples(rows, out)
    _summary(rows, t2 - t1)
    err_console.print(
        f"[dim]wrote {len(rows)} prompts to {escape(str(out))}; load {t1 - t0:.1f}s, sample {t2 - t1:.1f}s[/dim]"
    )


def _sample_with_progress(sampler, prompts: list, params) -> list:
    """``sampler.generate`` in chunks of a few generate calls, with a count of completions and an ETA. Chunk
    ``i`` samples with seed ``params.seed + i`` (its first prompt's index): reproducible, whatever the chunking
    of a later run's progress display."""
    from dataclasses import replace

    from ..progress import Work

    per_call = max(1, params.batch_size // params.n)
    chunk = per_call * 4
    results: list = []
    with Work(f"sampling ({sampler.name})", len(prompts) * params.n, unit="completions") as work:
        for start in range(0, len(prompts), chunk):
            part = prompts[start : start + chunk]
            results.extend(sampler.generate(part, replace(params, seed=params.seed + start)))
            work.advance(len(part) * params.n)
    return results


def _summary(rows, seconds: float) -> None:
    completions = sum(len(r.completions) for r in rows)
    tokens = sum(sum(r.num_tokens or []) for r in rows)
    by_family: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.gold_scores is not None:
            by_family[r.family or "?"].extend(r.gold_scores)
    if by_family:
        table = Table(title="gold score by family")
        for col in ("family", "completions", "mean gold"):
            table.add_column(col, justify="right" if col != "family" else "left")
        everything = [s for v in by_family.values() for s in v]
        for fam, scores in sorted(by_family.items()):
            table.add_row(fam, str(len(scores)), f"{sum(scores) / len(scores):.3f}")
        table.add_row("all", str(len(everything)), f"{sum(everything) / len(everything):.3f}")
        Console().print(table)
    if seconds > 0:
        typer.echo(
            f"{completions} completions, {tokens} tokens in {seconds:.1f}s: "
            f"{completions / seconds:.2f} completions/s, {tokens / seconds:.1f} tokens/s"
        )


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_cmd)
