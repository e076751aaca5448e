"""mkdocs hook: reference pages written from the code at build time, so they cannot drift from it.

A page holding ``<!-- generated: objectives -->`` gets every registered objective (name, inputs, reference,
the algorithms using it, the docstring with paper and formula, the parameter dataclass);
``<!-- generated: algorithms -->`` the algorithm table (``preflab.algorithms``);
``<!-- generated: config -->`` every config section's fields (type, default, one-line description).
The code is imported from this checkout's ``src/`` (first on ``sys.path``), whatever else is installed.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
MARKER = re.compile(r"<!-- generated: ([\w-]+) -->")


def _use_checkout() -> None:
    if sys.path[0] != str(SRC):
        sys.path.insert(0, str(SRC))


def _plain(doc: str) -> str:
    """A docstring for a ```text block: RST roles and double backticks dropped."""
    doc = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc)
    return doc.replace("``", "")


def _type_name(tp: object) -> str:
    if isinstance(tp, str):
        return tp
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _used_by(objective: str) -> str:
    """The algorithms whose loss is ``objective``, each with where it runs, or what the objective is for."""
    from preflab.algorithms import ALGORITHMS, OBJECTIVE_ONLY, objective_choices

    rows = [a for a in ALGORITHMS.values() if a.objective == objective]
    if not rows:
        return _cell(OBJECTIVE_ONLY.get(objective, "no algorithm row"))
    used = [f"[`{a.name}`](algorithms.md#{a.name}) ({' + '.join(sorted(a.runs))})" for a in rows]
    # rows whose objective a config may choose (online_dpo + objective.name: ipo is online IPO)
    used += [
        f"[`{a.name}`](algorithms.md#{a.name}) (objective choice)"
        for a in ALGORITHMS.values()
        if objective in objective_choices(a)
    ]
    return ", ".join(used)


def objectives() -> str:
    _use_checkout()
    from preflab.objectives import REGISTRY

    specs = sorted(REGISTRY.values(), key=lambda s: (s.inputs, s.name))
    out = [
        f"{len(specs)} objectives are registered.",
        "",
        "| name | inputs | reference | algorithms (where they run) | parameters (defaults) |",
        "|---|---|---|---|---|",
    ]
    for spec in specs:
        params = ", ".join(f"`{f.name}={f.default!r}`" for f in dataclasses.fields(spec.params)) or "none"
        ref = "needed" if spec.needs_ref else "none"
        out.append(f"| [`{spec.name}`](#{spec.name}) | `{spec.inputs}` | {ref} | {_used_by(spec.name)} | {params} |")
    for spec in specs:
        out += [
            "",
            f"## {spec.name} {{#{spec.name}}}",
            "",
            f"Inputs: `{spec.inputs}` · reference policy: {'needed' if spec.needs_ref else 'none'} · "
            f"algorithms: {_used_by(spec.name)} · function `{spec.fn.__module__}.{spec.fn.__name__}`",
            "",
            "```text",
            _plain(inspect.cleandoc(spec.doc)),
            "```",
            "",
            f"Parameters: `{spec.params.__name__}`",
            "",
            "| field | type | default |",
            "|---|---|---|",
        ]
        for f in dataclasses.fields(spec.params):
            out.append(f"| `{f.name}` | `{_cell(_type_name(f.type))}` | `{_cell(repr(f.default))}` |")
        params_doc = inspect.getdoc(spec.params)
        if params_doc and not params_doc.startswith(f"{spec.params.__name__}("):
            out += ["", "```text", _plain(params_doc), "```"]
    return "\n".join(out)


def _yaml_value(value: object) -> str:
    """A default as it would be written in YAML (null, true, 0.1, "text", [..])."""
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _default(field) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        return _yaml_value(field.default_factory())
    return "required" if field.default is PydanticUndefined else _yaml_value(field.default)


def _config_type(annotation: object) -> str:
    """A field's type in YAML terms: Literal choices listed, Optional as "or null"."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return " / ".join(str(a) for a in args)
    if args and type(None) in args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = _config_type(rest[0]) if len(rest) == 1 else " or ".join(_config_type(a) for a in rest)
        return f"{inner} or null"
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_config_type(a) for a in args)
    return _type_name(annotation)


def config_reference() -> str:
    _use_checkout()
    from pydantic import BaseModel

    from preflab.config import RunConfig

    def section_of(annotation) -> type[BaseModel] | None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        return None

    top = ["## Top level", "", "| key | type | default | description |", "|---|---|---|---|"]
    sections = []
    for name, field in RunConfig.model_fields.items():
        sub = section_of(field.annotation)
        if sub is None:
            top.append(
                f"| `{name}` | {_cell(_config_type(field.annotation))} | `{_cell(_default(field))}` | "
                f"{_cell(field.description or '')} |"
            )
            continue
        rows = [
            f"## `{name}:` {{#{name}}}",
            "",
            _cell(inspect.getdoc(sub) or ""),
            "",
            "| key | type | default | description |",
            "|---|---|---|---|",
        ]
        for key, sub_field in sub.model_fields.items():
            rows.append(
                f"| `{name}.{key}` | {_cell(_config_type(sub_field.annotation))} | "
                f"`{_cell(_default(sub_field))}` | {_cell(sub_field.description or '')} |"
            )
        sections += ["", *rows]
    return "\n".join(top + sections)


def algorithms() -> str:
    _use_checkout()
    from preflab.algorithms import (
        ALGORITHMS,
        DATA_SCHEDULES,
        NONE,
        REFERENCE_SCHEDULES,
        objective_choices,
        with_objective,
    )

    def runs(algo) -> str:
        return " + ".join(sorted(algo.runs))

    out = [
        f"{len(ALGORITHMS)} algorithms are in the table.",
        "",
        "| name | runs on | objective | data schedule | reference schedule | paper |",
        "|---|---|---|---|---|---|",
    ]
    for algo in ALGORITHMS.values():
        out.append(
            f"| [`{algo.name}`](#{algo.name}) | {runs(algo)} "
            f"| [`{algo.objective}`](objectives.md#{algo.objective}) "
            f"| `{algo.data}` | `{algo.reference}` | {_cell(algo.paper)} |"
        )
    out += ["", "## Data schedules", "", "| schedule | where the next batch comes from |", "|---|---|"]
    out += [f"| `{key}` | {_cell(text)} |" for key, text in DATA_SCHEDULES.items()]
    out += ["", "## Reference schedules", "", "| schedule | what log π is compared with |", "|---|---|"]
    out += [f"| `{key}` | {_cell(text)} |" for key, text in REFERENCE_SCHEDULES.items()]
    out += ["", "## Each algorithm"]
    for algo in ALGORITHMS.values():
        params = ", ".join(f"`{k}={v!r}`" for k, v in algo.params.items()) or "the objective's own"
        testbed = ", ".join(f"`{k}={v!r}`" for k, v in algo.testbed.items()) or "none"
        out += [
            "",
            f"### {algo.name} {{#{algo.name}}}",
            "",
            f"- objective: [`{algo.objective}`](objectives.md#{algo.objective}); parameters: {params}",
            f"- data: `{algo.data}` ({_cell(DATA_SCHEDULES[algo.data])}); "
            f"reference: `{algo.reference}` ({_cell(REFERENCE_SCHEDULES[algo.reference])})",
            f"- runs on: {runs(algo)}; paper: {_cell(algo.paper)}",
            f"- claim ({algo.guarantee} iterate): {_cell(algo.claim)}; checked by `{algo.verified_by}`",
            f"- testbed defaults: {testbed}",
        ]
        choices = objective_choices(algo)
        if choices:
            names = ", ".join(f"[`{name}`](objectives.md#{name})" for name in choices)
            free = ", ".join(f"`{name}`" for name, row in choices.items() if row.reference == NONE)
            out.append(
                f"- objective choice: `objective: {{name: NAME}}` (testbed: `run_algorithm(..., objective=NAME)`, "
                f"`preflab testbed run --objective NAME`) trains any of {names} on this schedule instead (e.g. "
                f"`ipo`); the reference schedule stays `{algo.reference}` (`{NONE}` for {free}: no reference model "
                "is loaded) and the defaults are that objective's row's. Each choice's own claim (`not checked` "
                "where no test checks one):"
            )
            for name in choices:
                v = with_objective(algo, name)
                if v.verified_by:
                    out.append(
                        f"    - `{name}` ({v.guarantee} iterate): {_cell(v.claim)}; checked by `{v.verified_by}`"
                    )
                else:
                    out.append(f"    - `{name}`: {_cell(v.claim)}")
    return "\n".join(out)


GENERATORS = {"objectives": objectives, "algorithms": algorithms, "config": config_reference}


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: A002 - mkdocs' hook signature
    def replace(match: re.Match) -> str:
        return GENERATORS[match.group(1)]()

    return MARKER.sub(replace, markdown)
