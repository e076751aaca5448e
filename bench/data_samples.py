"""Write seeded HH-RLHF-style and UltraFeedback-style JSONL files, then time loading them.

    .venv/bin/python bench/data_samples.py --out /tmp/prefdata --rows 1000 --bad 3
    .venv/bin/preflab data inspect /tmp/prefdata/hh.jsonl
    .venv/bin/preflab data inspect /tmp/prefdata/ultrafeedback.jsonl

The HH file holds whole transcripts in ``chosen``/``rejected`` (1-3 human turns, the last assistant
turn differing); the UltraFeedback file holds an ``instruction`` and four ``completions`` with GPT-4-
style aspect ``annotations`` (some ``"N/A"``), ``fine-grained_score`` and ``overall_score``. ``--bad N``
appends N bad rows of each of a few kinds, spread through the file, so ``inspect`` has findings to show.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

WORDS = (
    "the a model answer question data because which would could should value policy reward human "
    "assistant preference learning gradient example simple clear helpful honest safe careful detail "
    "explain reason step first then finally result number list code python function return error"
).split()
ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
MODELS = ("gpt-4", "llama-2-70b-chat", "wizardlm-13b", "falcon-40b-instruct", "mpt-30b-chat")


def sentence(rng: random.Random, mean_words: float) -> str:
    n = max(1, int(rng.lognormvariate(0, 0.6) * mean_words))
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + rng.choice(".?!")


def hh_row(rng: random.Random, i: int) -> dict:
    turns = []
    for _ in range(rng.randint(0, 2)):
        turns.append(f"\n\nHuman: {sentence(rng, 12)}\n\nAssistant: {sentence(rng, 30)}")
    prompt = "".join(turns) + f"\n\nHuman: {sentence(rng, 15)}\n\nAssistant:"
    chosen = " " + " ".join(sentence(rng, 18) for _ in range(rng.randint(1, 4)))
    rejected = " " + " ".join(sentence(rng, 12) for _ in range(rng.randint(1, 3)))
    return {"chosen": prompt + chosen, "rejected": prompt + rejected}


def uf_row(rng: random.Random, i: int) -> dict:
    comps = []
    for model in rng.sample(MODELS, 4):
        ratings = {a: str(rng.randint(1, 5)) for a in ASPECTS}
        if rng.random() < 0.1:
            ratings["honesty"] = "N/A"
        numeric = [int(v) for v in ratings.values() if v != "N/A"]
        comps.append(
            {
                "model": model,
                "principle": rng.choice(["helpfulness", "honesty", "truthfulness"]),
                "response": " ".join(sentence(rng, 20) for _ in range(rng.randint(1, 6))),
                "annotations": {a: {"Rating": v, "Rationale": sentence(rng, 10)} for a, v in ratings.items()},
                "fine-grained_score": sum(numeric) / len(numeric),
                "overall_score": float(rng.randint(2, 20)) / 2,
                "critique": sentence(rng, 25),
            }
        )
    return {
        "source": rng.choice(["evol_instruct", "sharegpt", "flan", "ultrachat"]),
        "instruction": sentence(rng, 25),
        "models": [c["model"] for c in comps],
        "completions": comps,
    }


def bad_lines(kind: str, rng: random.Random) -> list[str]:
    """A few rows broken in different ways (one per kind) for the given layout."""
    if kind == "hh":
        same = hh_row(rng, 0)
        return [
            '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: hello", "rejected": ',
            json.dumps({"chosen": same["chosen"], "rejected": same["chosen"]}),
            json.dumps({"chosen": same["chosen"]}),
        ]
    row = uf_row(rng, 0)
    row["completions"][2]["overall_score"] = float("nan")
    tie = uf_row(rng, 0)
    for c in tie["completions"]:
        c["overall_score"] = 7.0
    empty = uf_row(rng, 0)
    empty["instruction"] = ""
    return [json.dumps(row), json.dumps(tie), json.dumps(empty)]


def write(path: Path, make, kind: str, rows: int, bad: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = [json.dumps(make(rng, i)) for i in range(rows)]
    for k in range(bad):
        for j, line in enumerate(bad_lines(kind, rng)):
            lines.insert((k * 3 + j + 1) * len(lines) // (bad * 3 + 1), line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/prefdata"))
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--bad", type=int, default=0, help="bad rows of each kind to mix in")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    files = {"hh": (args.out / "hh.jsonl", hh_row), "uf": (args.out / "ultrafeedback.jsonl", uf_row)}
    for kind, (path, make) in files.items():
        write(path, make, kind, args.rows, args.bad, args.seed)

    from preflab.data import load_preferences

    print(f"{'file':<22}{'MB':>7}{'rows':>7}{'records':>9}{'skipped':>9}{'seconds':>9}{'rows/s':>9}")
    for path, _ in files.values():
        t0 = time.perf_counter()
        res = load_preferences(path, on_bad_row="skip", kind="pairs")
        dt = time.perf_counter() - t0
        mb = path.stat().st_size / 1e6
        print(
            f"{path.name:<22}{mb:>7.2f}{res.n_rows:>7}{len(res.records):>9}{sum(res.skipped.values()):>9}"
            f"{dt:>9.3f}{res.n_rows / dt:>9.0f}"
        )


if __name__ == "__main__":
    main()
