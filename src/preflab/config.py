"""Run configs: YAML files validated by pydantic models.

Every section is a :class:`Section` (unknown keys are an error that names the key, the file, its line
and the closest valid key; numbers must be finite; a key given twice in one mapping is an error naming
both lines). ``--set a.b=value`` overrides are applied before validation; the value is parsed as YAML
(``--set train.lr=1e-5``, ``--set model.lora.enabled=true``), and an error in a value that came from a
flag cites the flag, not a line of the file.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from .data.config import DataConfig
from .errors import ConfigError
from .evaluation.config import EvalConfig
from .pipelines.config import QuickstartSection
from .sections import Section
from .training.config import (
    IterativeSection,
    LoraSection,
    ObjectiveConfig,
    OnlineSection,
    ReferenceSection,
    RewardSection,
    RolloutSection,
    TrainConfig,
)

T = TypeVar("T", bound=BaseModel)


class ModelConfig(Section):
    """Which causal LM to load and how."""

    name_or_path: str = Field("smollm2-135m-instruct", description="Embedded name, HF id, local HF dir or .gguf path.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for HF ids.")
    dtype: str = Field("auto", description="Weights dtype: auto (fp32 master weights), float32, bfloat16.")
    trust_remote_code: bool = Field(False, description="Allow the model repo's own Python code to run.")
    device: str = Field(
        "auto", description="Device for sampling and evaluation: auto (a CUDA GPU if present), cpu, cuda:N."
    )


class RunConfig(Section):
    """A whole run. Stages add their own sections here as they land."""

    seed: int = Field(0, description="One seed drives every random choice of the run.")
    output_dir: str = Field("runs/default", description="Run directory: checkpoints, metrics, report.")
    algorithm: str | None = Field(
        None, description="What to train (`preflab algorithms`); null = objective.name's algorithm, else dpo."
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="The policy model.")
    data: DataConfig = Field(default_factory=DataConfig, description="Preference data: source, format, bad rows.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation: win rates, KL, null-model check.")
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="The training loop: batches, optimiser, checkpoints."
    )
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig, description="The objective and its parameters.")
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA adapters (off = full fine-tuning).")
    reference: ReferenceSection = Field(default_factory=ReferenceSection, description="The reference policy π_ref.")
    online: OnlineSection = Field(
        default_factory=OnlineSection, description="Online schedule: sampling for online algorithms."
    )
    iterative: IterativeSection = Field(
        default_factory=IterativeSection,
        description="Iterative schedule: rounds of sampling from π_t, judging and training.",
    )
    rollout: RolloutSection = Field(
        default_factory=RolloutSection,
        description="Policy-gradient schedule: G samples per prompt, rewards, epochs over each rollout.",
    )
    reward: RewardSection = Field(
        default_factory=RewardSection, description="Reward-model head (algorithms that train a reward model)."
    )
    quickstart: QuickstartSection = Field(
        default_factory=QuickstartSection, description="The end-to-end quickstart job."
    )

    @model_validator(mode="after")
    def _algorithm(self) -> RunConfig:
        """The algorithm table decides the objective and the schedules (a ConfigError naming the field)."""
        from .training.lm_algorithms import resolve_algorithm

        resolve_algorithm(self)
        return self


# ---------------------------------------------------------------- loading


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping gives the same key twice (YAML would silently keep the last value)."""


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (merge keys ``<<`` may still be
    overridden, as YAML intends)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base constructor reports it
                continue
            if first is not None:
                raise DuplicateKeyError(
                    None, None, f"duplicate key '{key}' (first given on line {first})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse YAML safely (no Python objects), refusing duplicate keys."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506  (a SafeLoader subclass)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: what is wrong, without the quoted source lines."""
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if problem:
        return f"{problem} ({context})" if context else str(problem)
    return " ".join(str(exc).split())


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map every dotted key path in a YAML document to its 1-based line number."""
    index: dict[tuple[str, ...], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return index

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = path + (str(key.value),)
                index[sub] = key.start_mark.line + 1
                walk(value, sub)

    walk(root, ())
    return index


def _fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid field names of the (nested) section that ``loc``'s last key lives in."""
    current: Any = cls
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        current = _section_type(ann)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _section_type(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _flag_for(loc: tuple[str, ...], flags: dict[tuple[str, ...], str]) -> tuple[str | None, bool]:
    """The ``--set`` flag that set ``loc`` (or a section above it), and whether it set it wholly."""
    for path, item in reversed(list(flags.items())):
        if loc[: len(path)] == path:
            return item, True
    for path, item in reversed(list(flags.items())):
        if path[: len(loc)] == loc:
            return item, False
    return None, False


def _explain(
    err: ValidationError,
    cls: type[BaseModel],
    source: str | None,
    lines: dict,
    flags: dict[tuple[str, ...], str] | None = None,
) -> ConfigError:
    first = err.errors()[0]
    loc = tuple(str(p) for p in first["loc"])
    key = ".".join(loc)
    line = lines.get(loc)
    flag, wholly = _flag_for(loc, flags or {})
    if first["type"] == "extra_forbidden":
        valid = _fields_at(cls, loc)
        close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{'.'.join(loc[:-1] + (close[0],))}'?" if close else ""
        valid_list = ", ".join(valid)
        msg = f"unknown key '{key}'{hint} (valid here: {valid_list})"
    else:
        msg = f"invalid value for '{key}': {first['msg'].removeprefix('Value error, ')}"
    more = len(err.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    if flag is not None and (wholly or line is None):
        return ConfigError(f"--set {flag}: {msg}")
    if flag is not None:
        msg += f" (with --set {flag})"
    return ConfigError(msg, file=source, line=line)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``'a.b=value'`` -> (['a', 'b'], parsed YAML value)."""
    if "=" not in item:
        raise ConfigError(f"--set {item}: not of the form key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item}: empty key")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item}: value is not valid YAML ({yaml_problem(exc)})") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set key.path=value`` items to a config mapping, in order."""
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def override_paths(overrides: list[str]) -> dict[tuple[str, ...], str]:
    """``{key path: flag}`` of well-formed ``--set`` items (for errors that cite the flag)."""
    paths: dict[tuple[str, ...], str] = {}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if "=" in item and key:
            paths[tuple(key.split("."))] = item
    return paths


def _missing_config_hint(path: Path) -> str:
    """A config that is not there: the closest YAML file beside it, else where the shipped recipes are listed."""
    import difflib

    folder = path.parent
    names = sorted(q.name for q in folder.glob("*.y*ml")) if folder.is_dir() else []
    close = difflib.get_close_matches(path.name, names, n=1)
    if close:
        return f"; did you mean {folder / close[0]}?"
    return "; `preflab recipes` lists the shipped recipes (`preflab recipes --out DIR` copies them)"


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    cls: type[T] = RunConfig,  # type: ignore[assignment]
) -> T:
    """Read a YAML config (or start from defaults), apply ``--set`` overrides, validate."""
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    source = None
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found{_missing_config_hint(p)}", file=source)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config is not UTF-8 text ({exc.reason} at byte {exc.start})", file=source) from None
        try:
            loaded = load_yaml(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            what = yaml_problem(exc) if isinstance(exc, DuplicateKeyError) else f"invalid YAML: {yaml_problem(exc)}"
            raise ConfigError(what, file=source, line=mark.line + 1 if mark else None) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("a config must be a mapping of sections", file=source)
        data = loaded
        lines = _line_index(text)
    data = apply_overrides(data, overrides or [])
    return validate_config(data, cls, source=source, lines=lines, overrides=overrides)


def validate_config(
    data: dict[str, Any],
    cls: type[T] = RunConfig,  # type: ignore[assignment]
    *,
    source: str | None = None,
    lines: dict[tuple[str, ...], int] | None = None,
    overrides: list[str] | None = None,
) -> T:
    """Validate a config mapping; errors name the key, the closest valid key and (with ``lines``) the line,
    or the ``--set`` flag (of ``overrides``) that gave the value."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise _explain(err, cls, source, lines or {}, override_paths(overrides or [])) from None
    except ConfigError as err:  # a cross-field check (the algorithm table's) names its field: add the line or flag
        if err.file is not None or err.field is None:
            raise
        loc = tuple(err.field.split("."))
        line = (lines or {}).get(loc)
        flag, wholly = _flag_for(loc, override_paths(overrides or []))
        if flag is not None and (wholly or line is None):
            raise ConfigError(f"--set {flag}: {err.message}") from None
        message = err.message + (f" (with --set {flag})" if flag is not None else "")
        raise ConfigError(message, file=source, line=line, field=err.field) from None


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML (defaults filled in)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
