"""``preflab models`` and ``preflab generate``."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

err_console = Console(stderr=True)


def models() -> None:
    """List embedded and cached models (and how any HF id or path also resolves)."""
    from ..models import list_models

    table = Table(title="preflab models")
    for col in ("name", "kind", "cached", "path"):
        table.add_column(col)
    for row in list_models():
        table.add_row(*(escape(str(row[k])) for k in ("name", "kind", "cached", "path")))
    Console().print(table)
    typer.echo("Also accepted: any local HF model directory, a .gguf file, or a Hugging Face hub id.")


def generate(
    prompt: str = typer.Option(..., "--prompt", "-p", help="User message to answer."),
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Model name, path or HF id."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
) -> None:
    """Answer one prompt with a model, through its chat template."""
    from ..generation import SamplingParams, generate_chat
    from ..models import load_model, load_tokenizer

    t0 = time.perf_counter()
    with err_console.status(f"loading {model} (the first load of a GGUF model converts it once)"):
        tok = load_tokenizer(model, trust_remote_code=trust_remote_code)
        lm = load_model(model, trust_remote_code=trust_remote_code)
    t1 = time.perf_counter()
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
    with err_console.status("generating"):
        answer = generate_chat(lm, tok, [prompt], params)[0]
    t2 = time.perf_counter()
    typer.echo(answer)
    err_console.print(f"[dim]load {t1 - t0:.1f}s, generate {t2 - t1:.1f}s[/dim]")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("generate")(generate)
