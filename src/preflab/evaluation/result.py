"""One evaluation's results, serialisable to JSON in ``RUN_DIR/eval/<name>.json``.

Every part is optional, so the same file holds a full model-vs-model evaluation, a ranking-accuracy
check or an over-optimisation sweep; the report renders whatever parts are present.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..files import atomic_open
from .groups import GroupResults
from .kl import KLEstimate
from .length_control import LengthControlledWinRate
from .null_model import NullModelCheck
from .overoptimization import OverOptimisation
from .ranking import RankingAccuracy
from .stats import Estimate
from .winrate import WinRate

KIND = "preflab.eval"
VERSION = 1


@dataclass
class FamilyGold:
    """Gold reward of A and B on one task family, and A's paired gain over B."""

    family: str
    a: Estimate
    b: Estimate
    gain: Estimate
    win_rate: WinRate | None = None

    @classmethod
    def from_dict(cls, d: dict) -> FamilyGold:
        wr = WinRate.from_dict(d["win_rate"]) if d.get("win_rate") else None
        return cls(d["family"], Estimate(**d["a"]), Estimate(**d["b"]), Estimate(**d["gain"]), wr)


@dataclass
class EvalResult:
    """Results of comparing policy A with policy B (names in ``a_name``/``b_name``) under ``judge``."""

    name: str = "eval"
    a_name: str = "policy"
    b_name: str = "reference"
    judge: str | None = None
    win_rate: WinRate | None = None
    lc_win_rate: LengthControlledWinRate | None = None
    null_check: NullModelCheck | None = None
    kl: KLEstimate | None = None
    gold: list[FamilyGold] = field(default_factory=list)
    groups: GroupResults | None = None
    ranking: RankingAccuracy | None = None
    overoptimisation: OverOptimisation | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data: dict[str, Any] = {"kind": KIND, "version": VERSION}
        for key in ("name", "a_name", "b_name", "judge", "samples", "meta"):
            data[key] = getattr(self, key)
        data["gold"] = [asdict(g) for g in self.gold]
        for key in ("win_rate", "lc_win_rate", "null_check", "kl", "groups", "ranking", "overoptimisation"):
            part = getattr(self, key)
            data[key] = None if part is None else part.to_dict()
        return _json_safe(data)

    @classmethod
    def from_dict(cls, data: dict, source: str | None = None) -> EvalResult:
        if data.get("kind") != KIND:
            raise DataError(f"not a preflab evaluation (kind={data.get('kind')!r})", file=source, field="kind")
        parsers = {
            "win_rate": WinRate.from_dict,
            "lc_win_rate": LengthControlledWinRate.from_dict,
            "null_check": NullModelCheck.from_dict,
            "kl": KLEstimate.from_dict,
            "groups": GroupResults.from_dict,
            "ranking": RankingAccuracy.from_dict,
            "overoptimisation": OverOptimisation.from_dict,
        }
        try:
            parts = {k: (None if data.get(k) is None else fn(data[k])) for k, fn in parsers.items()}
            gold = [FamilyGold.from_dict(g) for g in data.get("gold") or []]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed evaluation file ({type(exc).__name__}: {exc})", file=source) from None
        return cls(
            name=data.get("name", "eval"),
            a_name=data.get("a_name", "policy"),
            b_name=data.get("b_name", "reference"),
            judge=data.get("judge"),
            gold=gold,
            samples=data.get("samples") or [],
            meta=data.get("meta") or {},
            **parts,
        )

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON, atomically (temp file + rename)."""
        path = Path(path)
        with atomic_open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=1, ensure_ascii=False, allow_nan=False)
        return path

    def save_to_run(self, run_dir: str | Path) -> Path:
        """Write ``RUN_DIR/eval/<name>.json`` (``name`` must be one file name: it cannot leave ``eval/``)."""
        from ..files import name_problem

        problem = name_problem(self.name)
        if problem:
            raise DataError(f"evaluation name {problem}", field="name")
        return self.save(Path(run_dir) / "eval" / f"{self.name}.json")

    @classmethod
    def load(cls, path: str | Path) -> EvalResult:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read evaluation file ({exc})", file=str(path)) from None
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
        if not isinstance(data, dict):
            raise DataError("an evaluation file must hold a JSON object", file=str(path))
        return cls.from_dict(data, source=str(path))


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj
