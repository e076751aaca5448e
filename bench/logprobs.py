"""Sequence log-probs from final hidden states: naive full log-softmax vs preflab's, time and peak memory.

    .venv/bin/python bench/logprobs.py                              # vocab 49,152, lengths 256..2,048, batch 4
    .venv/bin/python bench/logprobs.py --lengths 256,512 --repeats 2

Every completion position of a (batch, length) sequence scores its next token (SmolLM2-135M's shapes:
hidden 576, vocab 49,152, tied lm-head; bf16 autocast as in training). Methods:

* ``naive``: ``logits = h Wᵀ`` for every position, ``log_softmax`` over the vocabulary in fp32, gather.
* ``gather-lse``: preflab's :func:`preflab.models.logprobs.token_logprobs` on the same full logits:
  gathered logit minus a row-chunked fp32 logsumexp, no ``(tokens, vocab)`` log-softmax.
* ``chunked-head``: preflab's :func:`preflab.models.logprobs.linear_token_logprobs`: the lm-head applied
  in chunks of rows, logits never stored; backward recomputes each chunk (no ``(tokens, vocab)`` tensor).

Each (method, length, pass) runs in a fresh subprocess; ``peak MiB`` is that process's peak RSS minus its
RSS once the inputs exist, i.e. the memory the computation itself needed. ``max |Δ|`` compares the summed
log-probs of each sequence with ``naive``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import current_rss_mb, machine_line, peak_rss_mb, run_worker, table, write_result  # noqa: E402

HIDDEN, VOCAB = 576, 49_152
METHODS = ("naive", "gather-lse", "chunked-head")


def sequence_logprobs(
    method: str, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int
) -> torch.Tensor:
    """(B, T) summed log-probs of ``targets`` under ``softmax(hidden @ weightᵀ)``, by ``method``."""
    from preflab.models.logprobs import linear_token_logprobs, token_logprobs

    b, t, h = hidden.shape
    flat_h, flat_t = hidden.reshape(-1, h), targets.reshape(-1)
    if method == "naive":
        logits = flat_h @ weight.t()
        tok = torch.log_softmax(logits.float(), dim=-1).gather(-1, flat_t.unsqueeze(-1)).squeeze(-1)
    elif method == "gather-lse":
        tok = token_logprobs(flat_h @ weight.t(), flat_t, chunk)
    elif method == "chunked-head":
        tok = linear_token_logprobs(flat_h, weight, flat_t, chunk_size=chunk)
    else:
        raise ValueError(method)
    return tok.reshape(b, t).sum(-1)


def worker(args: argparse.Namespace) -> None:
    gen = torch.Generator().manual_seed(0)
    hidden = (torch.randn(args.batch, args.length, HIDDEN, generator=gen) * 2.0).requires_grad_(args.backward)
    weight = (torch.randn(VOCAB, HIDDEN, generator=gen) * 0.05).requires_grad_(args.backward)
    targets = torch.randint(0, VOCAB, (args.batch, args.length), generator=gen)
    times, value = [], None
    base = current_rss_mb()
    for _ in range(args.repeats + 1):  # the first call warms up and is not timed
        hidden.grad = weight.grad = None
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = sequence_logprobs(args.method, hidden, weight, targets, args.chunk)
        if args.backward:
            out.sum().backward()
        times.append(time.perf_counter() - start)
        value = out.detach()
        del out
    write_result(args.worker_out, {"times": times[1:], "peak_extra_mb": peak_rss_mb() - base, "value": value.tolist()})


def parent(args: argparse.Namespace) -> None:
    lengths = [int(x) for x in args.lengths.split(",")]
    print(
        f"# sequence log-probs, vocab {VOCAB:,}, hidden {HIDDEN}, batch {args.batch}, "
        f"{'bf16 autocast' if args.bf16 else 'fp32'}, chunk {args.chunk} rows"
    )
    print(f"machine: {machine_line()}", flush=True)
    rows: list[dict[str, Any]] = []
    for backward in (False, True):
        for length in lengths:
            ref = None
            for method in METHODS:
                cmd = [
                    "--method",
                    method,
                    "--length",
                    str(length),
                    "--batch",
                    str(args.batch),
                    "--repeats",
                    str(args.repeats),
                    "--chunk",
                    str(args.chunk),
                ]
                cmd += ["--backward"] if backward else []
                cmd += [] if args.bf16 else ["--fp32"]
                res = run_worker(__file__, cmd, timeout=args.timeout)
                row: dict[str, Any] = {"pass": "fwd+bwd" if backward else "fwd", "length": length, "method": method}
                if "error" in res:
                    row["time_ms"] = f"failed: {res['error']}"
                    rows.append(row)
                    print(res.get("log", ""), file=sys.stderr)
                    continue
                value = torch.tensor(res["value"])
                ref = value if method == "naive" else ref
                row.update(
                    time_ms=1e3 * statistics.median(res["times"]),
                    peak_mb=res["peak_extra_mb"],
                    diff=float((value - ref).abs().max()) if ref is not None else float("nan"),
                )
                rows.append(row)
                print(
                    f"{row['pass']:8s} T={length:5d} {method:13s} {row['time_ms']:9.1f} ms {row['peak_mb']:8.0f} MiB",
                    flush=True,
                )
    for row in rows:
        base = next(
            (r for r in rows if r["pass"] == row["pass"] and r["length"] == row["length"] and r["method"] == "naive"),
            None,
        )
        if base and isinstance(row.get("time_ms"), float) and isinstance(base.get("time_ms"), float):
            row["speedup"] = base["time_ms"] / row["time_ms"]
            row["mem_ratio"] = row["peak_mb"] / max(base["peak_mb"], 1e-9)
    print()
    print(
        table(
            rows,
            [
                ("pass", "pass"),
                ("length", "seq len"),
                ("method", "method"),
                ("time_ms", "time ms"),
                ("speedup", "speed-up vs naive"),
                ("peak_mb", "peak MiB"),
                ("mem_ratio", "memory vs naive"),
                ("diff", "max |Δ| vs naive"),
            ],
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="256,512,1024,2048")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=1024, help="rows per chunk of preflab's logsumexp / lm-head")
    ap.add_argument("--fp32", dest="bf16", action="store_false", help="no bf16 autocast")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--length", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--backward", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_out:
        worker(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
