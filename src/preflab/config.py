"""Run configs: YAML files validated by pydantic models.

Every section is a :class:`Section` (unknown keys are an error that names the key, the file, its line
and the closest valid key). ``--set a.b=value`` overrides are applied before validation; the value is
parsed as YAML (``--set train.lr=1e-5``, ``--set model.lora.enabled=true``).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelConfig(Section):
    """Which causal LM to load and how."""

    name_or_path: str = Field("smollm2-135m-instruct", description="Embedded name, HF id, local HF dir or .gguf path.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for HF ids.")
    dtype: str = Field("auto", description="Weights dtype: auto (fp32 master weights), float32, bfloat16.")
    trust_remote_code: bool = Field(False, description="Allow the model repo's own Python code to run.")
    device: str = Field("auto", description="Device for sampling and evaluation: auto (a CUDA GPU if present), cpu, cuda:N.")


from .data.config import DataConfig  # noqa: E402  (needs Section, defined above)
from .evaluation.config import EvalConfig  # noqa: E402  (needs Section, defined above)
from .pipelines.config import QuickstartSection  # noqa: E402  (needs Section, defined above)
from .training.config import (  # noqa: E402  (needs Section, defined above)
    LoraSection,
    ObjectiveConfig,
    OnlineSection,
    ReferenceSection,
    TrainConfig,
)


class RunConfig(Section):
    """A whole run. Stages add their own sections here as they land."""

    seed: int = Field(0, description="One seed drives every random choice of the run.")
    output_dir: str = Field("runs/default", description="Run directory: checkpoints, metrics, report.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The policy model.")
    data: DataConfig = Field(default_factory=DataConfig, description="Preference data: source, format, bad rows.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation: win rates, KL, null-model check.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The training loop: batches, optimiser, checkpoints.")
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig, description="The objective and its parameters.")
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA adapters (off = full fine-tuning).")
    reference: ReferenceSection = Field(default_factory=ReferenceSection, description="The reference policy π_ref.")
    online: OnlineSection = Field(default_factory=OnlineSection, description="Online schedule: sampling for online objectives.")
    quickstart: QuickstartSection = Field(default_factory=QuickstartSection, description="The end-to-end quickstart job.")


# ---------------------------------------------------------------- loading


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


def _explain(err: ValidationError, cls: type[BaseModel], source: str | None, lines: dict) -> ConfigError:
    first = err.errors()[0]
    loc = tuple(str(p) for p in first["loc"])
    key = ".".join(loc)
    line = lines.get(loc)
    if first["type"] == "extra_forbidden":
        valid = _fields_at(cls, loc)
        close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{'.'.join(loc[:-1] + (close[0],))}'?" if close else ""
        valid_list = ", ".join(valid)
        msg = f"unknown key '{key}'{hint} (valid here: {valid_list})"
    else:
        msg = f"invalid value for '{key}': {first['msg']}"
    more = len(err.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(msg, file=source, line=line)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``'a.b=value'`` -> (['a', 'b'], parsed YAML value)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


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
            raise ConfigError("config file not found", file=source)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config is not UTF-8 text ({exc.reason} at byte {exc.start})", file=source) from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise ConfigError(
                f"invalid YAML: {getattr(exc, 'problem', exc)}",
                file=source,
                line=mark.line + 1 if mark else None,
            ) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("a config must be a mapping of sections", file=source)
        data = loaded
        lines = _line_index(text)
    data = apply_overrides(data, overrides or [])
    return validate_config(data, cls, source=source, lines=lines)


def validate_config(
    data: dict[str, Any],
    cls: type[T] = RunConfig,  # type: ignore[assignment]
    *,
    source: str | None = None,
    lines: dict[tuple[str, ...], int] | None = None,
) -> T:
    """Validate a config mapping; errors name the key, the closest valid key and (with ``lines``) the line."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise _explain(err, cls, source, lines or {}) from None


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML (defaults filled in)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
