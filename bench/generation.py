"""Sampling throughput, side by side: preflab's rollout engine against Hugging Face ``generate`` (and, with
``--engines``, preflab's plain decoding loop) on the same prompts and settings, in one process.

    .venv/bin/python bench/generation.py                              # SmolLM2-135M-Instruct, n=8 and n=1
    .venv/bin/python bench/generation.py --prompts 4 --dtypes fp32    # a quick look
    .venv/bin/python bench/generation.py --engines rollout,loop,generate --out result.json
    .venv/bin/python bench/generation.py --engines rollout,rollout-hf,generate   # the lean decoding step's share

Settings: the quickstart's (``--n 8``, 64 new tokens, temperature 0.8, top-p 1) and the same at n = 1, each
with fp32 weights and with bf16 weights (``SamplingParams(bf16=True)``: the fp32 weights are cast for the call
wherever the CPU runs bf16 matmuls). ``rollout-hf`` is the rollout engine decoding through the model's own forward
instead of :mod:`preflab.generation.lean`'s step (``SamplingParams(lean=False)``). ``llama.cpp`` (where
``llama-cpp-python`` is installed; it builds from source) samples with llama-cpp-python's completion API on the
GGUF file the embedded model comes from, computing with its own Q4_1 weights (the ``gguf`` rows), one sequence at
a time, every other setting equal; its token counts exclude the stop token. Every engine samples the same
``--prompts`` prompts of the default task suite with the same ``--batch-size`` (sequences decoded at once;
``generate`` gets ``batch_size // n`` prompts per call). Engines
run one after the other within each setting, each after an untimed warm-up call, so that a change in the
machine's load hits all of them alike; ``--repeats`` > 1 alternates them again and keeps each engine's best.
The process re-executes itself once under the memory allocator ``--malloc`` picks (default ``auto``: TCMalloc or
jemalloc when installed, as the ``preflab`` command does, :mod:`preflab.launch`; ``system`` = glibc's malloc), so
every engine runs under the same one; the header line names it.

Columns: ``tok/s`` = generated tokens (stop token included, padding excluded) per wall-clock second;
``compl/s`` = completions per second; ``peak RSS`` = the process's largest resident set during the call
(polled every 10 ms, MiB); ``MFU`` = useful FLOPs per second over the measured matmul peak of the weights' dtype
(useful FLOPs: each prompt encoded once, then each generated token, 2·N per token for the decoder's matmuls,
2·d·V for the lm-head, 4·d·layers per attended position; work an engine repeats, such as encoding a prompt once
per sample, is not counted). ``greedy`` rows decode at temperature 0 with every engine and count the prompts
whose tokens equal ``generate``'s exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import current_rss_mb, decoder_params, load_average, machine_line, matmul_peak, table  # noqa: E402


class RssPeak:
    """Largest resident set size seen while the block runs (a polling thread)."""

    def __enter__(self):
        self.peak = current_rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, current_rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_mb())


class _Counted:
    """A completion as llama-cpp-python reports it: a token count."""

    def __init__(self, num_tokens: int) -> None:
        self.num_tokens = num_tokens


def llama_cpp_model(model_name: str, threads: int):
    """llama-cpp-python on the embedded model's own GGUF file (the file preflab dequantises to fp32), or None where
    ``llama_cpp`` is not installed (it has no binary wheel on PyPI: ``pip install llama-cpp-python`` builds it)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from preflab.models.embedded import EMBEDDED, embedded_gguf_path

    if model_name not in EMBEDDED:
        raise SystemExit(f"the llama.cpp row reads an embedded model's GGUF file; '{model_name}' is not one")
    path = embedded_gguf_path(EMBEDDED[model_name])
    return Llama(model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)


def llama_cpp_sample(llm, texts: list[str], n: int, max_new_tokens: int, temperature: float, seed: int):
    """``n`` completions of each chat-rendered prompt, one sequence at a time (llama-cpp-python's completion API;
    a prompt's samples reuse its evaluated prefix), sampling with the same settings as the other engines: no
    top-k, top-p or min-p truncation, no repetition penalty."""
    rows = []
    for i, text in enumerate(texts):
        row = []
        for j in range(n):
            out = llm.create_completion(
                text,
                max_tokens=max_new_tokens,
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                min_p=0.0,
                repeat_penalty=1.0,
                seed=seed + 1_000 * i + j,
            )
            row.append(_Counted(int(out["usage"]["completion_tokens"])))
        rows.append(row)
    return rows


def useful_flops(model, prompt_lens: list[int], completions) -> float:
    """Each prompt encoded once, then every generated token (see the module docstring)."""
    cfg = model.config
    d, layers, vocab = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    n_body = decoder_params(model)
    flops = 0.0
    for plen, row in zip(prompt_lens, completions, strict=True):
        flops += 2.0 * n_body * plen + 4.0 * d * layers * plen * (plen + 1) / 2 + 2.0 * d * vocab
        for c in row:
            t = c.num_tokens
            # token k (0-based) attends to plen + k + 1 positions; the last token is not fed back
            fed = max(t - 1, 0)
            flops += 2.0 * n_body * fed + 2.0 * d * vocab * fed + 4.0 * d * layers * (fed * plen + fed * (fed + 1) / 2)
    return flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=8, help="Samples per prompt of the first setting (the second is n=1).")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--engines", default="rollout,generate")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--greedy-prompts", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="Also write the rows as JSON here.")
    ap.add_argument("--malloc", default="auto", help="auto, tcmalloc, jemalloc or system (see preflab.launch)")
    args = ap.parse_args()

    from preflab.launch import active_allocator, allocator_env, reexec

    reexec(allocator_env({**os.environ, "PREFLAB_MALLOC": args.malloc}))  # once: then the allocator is preloaded

    import torch

    from preflab.feedback.tasks import get_suite
    from preflab.generation import SamplingParams, sample
    from preflab.generation.sampler import cpu_bf16_supported, render_prompts
    from preflab.models import load_model, load_tokenizer

    tok, model = load_tokenizer(args.model), load_model(args.model)
    engines = args.engines.split(",")
    dtypes = args.dtypes.split(",")
    print(f"# {args.model} on {machine_line()}, malloc {active_allocator()}")
    peaks = {"fp32": matmul_peak(torch.float32)[0]}
    if "bf16" in dtypes:
        peaks["bf16"] = matmul_peak(torch.bfloat16)[0] if cpu_bf16_supported() else float("nan")
    print("# matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    prompts = [t.prompt for t in get_suite("default").tasks(args.prompts + 1, seed=args.seed)]
    warm, prompts = prompts[:1], prompts[1:]
    prompt_lens = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in render_prompts(tok, prompts)]
    rendered = render_prompts(tok, prompts)
    engines_needing_llm = "llama.cpp" in engines
    llm = llama_cpp_model(args.model, torch.get_num_threads()) if engines_needing_llm else None
    if engines_needing_llm and llm is None:
        print("# llama.cpp: llama_cpp is not installed (pip install llama-cpp-python builds it): no row")

    def add_row(best: dict, n: int, dt: str, eng: str, out, dt_s: float, rss_peak: float) -> None:
        tokens = sum(c.num_tokens for row in out for c in row)
        row = dict(
            setting=f"n={n}",
            dtype=dt,
            engine=eng,
            seconds=dt_s,
            tokens=tokens,
            tok_s=tokens / dt_s,
            compl_s=len(prompts) * n / dt_s,
            rss=rss_peak,
            mfu=useful_flops(model, prompt_lens, out) / dt_s / peaks[dt] if dt in peaks else float("nan"),
            load=load_average()[0],
        )
        if eng not in best or row["tok_s"] > best[eng]["tok_s"]:
            best[eng] = row
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    rows = []
    for n in dict.fromkeys([args.n, 1]):
        for dt in dtypes:
            base = dict(
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                seed=args.seed,
                n=n,
                batch_size=args.batch_size,
                bf16=dt == "bf16",
            )
            best: dict[str, dict] = {}
            for _ in range(args.repeats):
                for eng in engines:
                    if eng == "llama.cpp":
                        if dt != dtypes[0] or llm is None:
                            continue  # one row per setting: the GGUF file's own (Q4_1) weights
                        llama_cpp_sample(llm, render_prompts(tok, warm), 1, 4, args.temperature, args.seed)
                        with RssPeak() as rss:
                            t0 = time.perf_counter()
                            out = llama_cpp_sample(llm, rendered, n, args.max_new_tokens, args.temperature, args.seed)
                            dt_s = time.perf_counter() - t0
                        add_row(best, n, "gguf", eng, out, dt_s, rss.peak)
                        continue
                    kind = dict(engine="rollout", lean=False) if eng == "rollout-hf" else dict(engine=eng)
                    params = SamplingParams(**base, **kind)
                    sample(model, tok, warm, SamplingParams(**{**base, "max_new_tokens": 4}, **kind))
                    with RssPeak() as rss:
                        t0 = time.perf_counter()
                        out = sample(model, tok, prompts, params)
                        dt_s = time.perf_counter() - t0
                    add_row(best, n, dt, eng, out, dt_s, rss.peak)
            ref = best.get("generate")
            for row in best.values():
                row["speedup"] = row["tok_s"] / ref["tok_s"] if ref else float("nan")
                rows.append(row)
    greedy = []
    if "generate" in engines and args.greedy_prompts > 0:
        gp = prompts[: args.greedy_prompts]
        for dt in dtypes:
            params = dict(
                max_new_tokens=args.max_new_tokens, temperature=0.0, batch_size=args.batch_size, bf16=dt == "bf16"
            )
            ref = sample(model, tok, gp, SamplingParams(**params, engine="generate"))
            for eng in engines:
                if eng in ("generate", "llama.cpp"):  # llama.cpp computes with the file's 4-bit weights
                    continue
                kind = dict(engine="rollout", lean=False) if eng == "rollout-hf" else dict(engine=eng)
                got = sample(model, tok, gp, SamplingParams(**params, **kind))
                same = sum(a[0].token_ids == b[0].token_ids for a, b in zip(got, ref, strict=True))
                greedy.append(dict(engine=eng, dtype=dt, identical=f"{same}/{len(gp)}"))
    print()
    print(
        table(
            rows,
            [
                ("setting", "setting"),
                ("dtype", "weights"),
                ("engine", "engine"),
                ("seconds", "seconds"),
                ("tokens", "tokens"),
                ("tok_s", "tok/s"),
                ("compl_s", "compl/s"),
                ("rss", "peak RSS MiB"),
                ("mfu", "MFU"),
                ("speedup", "× generate"),
                ("load", "load 1 min"),
            ],
        )
    )
    if greedy:
        print()
        print(
            table(
                greedy,
                [
                    ("engine", "greedy engine"),
                    ("dtype", "weights"),
                    ("identical", "prompts token-identical to generate"),
                ],
            )
        )
    print(f"# after: {machine_line()}")
    if args.out:
        Path(args.out).write_text(
            json.dumps({"rows": rows, "greedy": greedy, "peaks": peaks}, indent=1), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
