"""``preflab algorithms``: the algorithm table — where each algorithm runs, its objective, schedules and paper."""

from __future__ import annotations

import json

import typer


def rows() -> list[dict[str, object]]:
    """One plain dict per algorithm of :data:`preflab.algorithms.ALGORITHMS`, in table order."""
    from ..algorithms import ALGORITHMS, LM, TESTBED, objective_choices, with_objective

    def variants(a) -> list[dict[str, object]]:  # noqa: ANN001
        """Each objective choice of an open row with its own claim ("not checked" without a Variant)."""
        out = []
        for objective in objective_choices(a):
            v = with_objective(a, objective)
            out.append(
                {
                    "objective": objective,
                    "reference": v.reference,
                    "claim": v.claim,
                    "guarantee": v.guarantee,
                    "verified_by": v.verified_by or None,
                }
            )
        return out

    return [
        {
            "name": a.name,
            "runs": [where for where in (LM, TESTBED) if where in a.runs],
            "objective": a.objective,
            "data": a.data,
            "reference": a.reference,
            "model": a.model,
            "claim": a.claim,
            "guarantee": a.guarantee,
            "verified_by": a.verified_by,
            "paper": a.paper,
            "params": dict(a.params),
            "testbed_defaults": dict(a.testbed),
            # objectives objective.name may pick instead (online_dpo: online IPO, online SimPO, ...)
            "objective_choice": list(objective_choices(a)),
            # the same, each with the claim of that (algorithm, objective) pair: preflab.algorithms.VARIANTS
            "variants": variants(a),
        }
        for a in ALGORITHMS.values()
    ]


def _words(key: object) -> str:
    return str(key).replace("_", " ")


def algorithms_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the whole table (claims, tests, defaults) as JSON."),
) -> None:
    """List every algorithm: where it runs (LM = `preflab train`, testbed = `preflab testbed run`), its
    objective, data schedule, reference schedule and paper."""
    table_rows = rows()
    if as_json:
        typer.echo(json.dumps(table_rows, indent=2, ensure_ascii=False))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
        title="preflab algorithms",
        caption="runs: LM = preflab train, TB = preflab testbed run; objective '=' = the algorithm's "
        "name; → reward model = trains a reward model, not the policy. --json adds claims, tests and defaults.",
    )
    for name in ("algorithm", "runs", "objective"):
        table.add_column(name, no_wrap=True)
    for name in ("data", "reference", "paper"):  # these wrap between words at 80 columns
        table.add_column(name, ratio=2 if name == "paper" else 1)
    for r in table_rows:
        runs = " ".join({"lm": "LM", "testbed": "TB"}[w] for w in r["runs"])  # type: ignore[union-attr]
        objective = "=" if r["objective"] == r["name"] else str(r["objective"])
        objective += "*" if r["objective_choice"] else ""
        data = _words(r["data"]) + ("" if r["model"] == "policy" else f" → {r['model']} model")
        table.add_row(str(r["name"]), runs, objective, data, _words(r["reference"]), str(r["paper"]))
    console = Console()
    console.print(table)
    for r in table_rows:  # the rows whose objective a config may choose: which ones, and what that changes
        if r["objective_choice"]:
            choice = ", ".join(map(str, r["objective_choice"]))  # type: ignore[call-overload]
            kind = "online" if r["data"] == "online_pairs" else str(r["data"]).replace("_", " ")
            console.print(
                f"* {r['name']}: or objective.name = any of {choice} (e.g. algorithm: {r['name']} + objective: "
                f"{{name: ipo}} is {kind} IPO); reference: {_words(r['reference'])}, none for simpo, orpo. Claims:",
                highlight=False,
            )
            for v in r["variants"]:  # type: ignore[union-attr]
                console.print(f"    {v['objective']}: {v['claim']}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("algorithms")(algorithms_cmd)
