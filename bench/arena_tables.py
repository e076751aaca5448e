"""Markdown tables of an arena experiment directory (bench/arena_experiment.sh), as in docs/arena.md.

Usage: python bench/arena_tables.py OUT_DIR. Besides each run's results.json it reads the LM cells for one
diagnostic: the mean weight an agent puts on the current leader (the action with the least cumulative loss
so far, rounds 2..T, ties skipped) — Hedge-like learners put more than ½ on it — and the share of rounds
played at the uniform distribution (to ±0.01).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def leader_weight(cell: dict) -> float | None:
    if "probs" not in cell or cell["env"].startswith("bandit"):
        return None
    probs, scored = np.array(cell["probs"]), np.array(cell["scored"])
    cum = np.cumsum(scored, axis=0)
    w = []
    for t in range(1, len(probs)):
        prev = cum[t - 1]
        leaders = np.flatnonzero(np.isclose(prev, prev.min()))
        if len(leaders) == 1:
            w.append(probs[t, leaders[0]])
    return float(np.mean(w)) if w else None


def uniform_share(cell: dict) -> float:
    """Share of rounds (over both players in a game) whose distribution is uniform to ±0.01."""
    keys = [k for k in ("probs", "left", "row_probs", "col_probs") if k in cell]
    shares = []
    for key in keys:
        P = np.array(cell[key])
        shares.append(np.mean(np.all(np.abs(P - 1.0 / P.shape[1]) < 0.011, axis=1)))
    return float(np.mean(shares))


def main(root: Path) -> None:
    for run in sorted(p for p in root.iterdir() if (p / "results.json").is_file()):
        res = json.loads((run / "results.json").read_text())
        cfg = res["config"]
        T = cfg["horizon"]
        game = cfg["env"].startswith("game")
        print(
            f"\n### {cfg['env']} (K = {cfg['n_actions'] if not game else 'see text'}, T = {T}, {cfg['seeds']} seeds)\n"
        )
        head = ["agent", f"R({T}) mean [95% CI]", f"R({T})/{T}", "β ± 1.96 s.e.", "verdict"]
        head += ["CCE gap at T [95% CI]"] if game else ["D(T)"] if not cfg["env"].startswith(("bandit", "duel")) else []
        head += ["weight on leader"] if cfg["env"].startswith("experts") else []
        head += ["parse failures", "rounds at uniform"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for name, r in res["agents"].items():
            t = r["no_regret_test"]
            beta = "—" if t["exponent"] is None else f"{t['exponent']:.2f} ± {1.96 * t['exponent_se']:.2f}"
            lo, hi = r["final_regret_ci"]
            row = [
                name,
                f"{r['final_regret_mean']:.2f} [{lo:.2f}, {hi:.2f}]",
                f"{r['avg_regret']:.3f}",
                beta,
                t["verdict"],
            ]
            if game:
                glo, ghi = r["final_cce_gap_ci"]
                row.append(f"{r['final_cce_gap_mean']:.3f} [{glo:.3f}, {ghi:.3f}]")
            elif not cfg["env"].startswith(("bandit", "duel")):
                row.append(f"{r['final_dynamic_regret_mean']:.2f}")
            if cfg["env"].startswith("experts"):
                cells = [json.loads(p.read_text()) for p in sorted((run / "cells" / name).glob("seed*.json"))]
                ws = [w for c in cells if (w := leader_weight(c)) is not None]
                row.append(f"{np.mean(ws):.2f}" if ws else "—")
            row.append(f"{r['parse_failures']}/{r['lm_rounds']}" if "parse_failures" in r else "—")
            cells = [json.loads(p.read_text()) for p in sorted((run / "cells" / name).glob("seed*.json"))]
            row.append(f"{np.mean([uniform_share(c) for c in cells]):.2f}")
            print("| " + " | ".join(row) + " |")
            if game:
                print(
                    f"|  | final play: row {np.round(r['final_row_probs'], 2).tolist()}, "
                    f"column {np.round(r['final_col_probs'], 2).tolist()} |" + " |" * (len(head) - 2)
                )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
