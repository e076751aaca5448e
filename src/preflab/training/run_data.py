"""A run's records: training and eval data loaded (or given in Python), their weights checked, and converted to the
record kind the objective trains on; the annotator index of each pair for mixture reward models."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import DataError
from ..objectives import ObjectiveSpec
from .lm_algorithms import SAMPLED
from .resolve import DATA_KIND_OF_INPUTS


def load_records(
    cfg: Any, spec: ObjectiveSpec, records: Any = None, eval_records: Any = None, schedule: str = "offline"
) -> tuple[list[Any], list[Any] | None]:
    """Training (and eval) records in the shape the objective consumes.

    ``records`` given in Python (a list of records or a :class:`preflab.data.LoadResult`) win over
    ``data.path``. Offline objectives over pairs take pairs (rankings are turned into pairs by
    ``data.rule``); unpaired objectives take unpaired records (pairs are split, as TRL does). The online
    schedule only needs prompts.
    """
    from ..data import convert, load_data

    if records is None:
        if cfg.data.path is None:
            raise DataError("no training data: set data.path (or pass records=...)", field="data.path")
        train_res, eval_res = load_data(cfg.data, seed=cfg.seed, output_dir=cfg.output_dir)
        records = train_res.records
        if eval_records is None and eval_res is not None:
            eval_records = eval_res.records
    records = list(getattr(records, "records", records))
    eval_records = list(getattr(eval_records, "records", eval_records)) if eval_records is not None else None
    check_weights(records, "training data", cfg.data.path, all_zero=schedule not in SAMPLED)
    if eval_records is not None:
        check_weights(eval_records, "eval data", cfg.data.eval_path or cfg.data.path, all_zero=False)
    target = DATA_KIND_OF_INPUTS[spec.inputs]

    def as_target(rows: list[Any], what: str) -> list[Any]:
        try:
            return convert(rows, target, rule=cfg.data.rule, seed=cfg.seed)
        except TypeError as exc:  # not a preference record at all
            raise DataError(f"{what}: {exc}; objective '{spec.name}' trains on {target}") from None
        except DataError as exc:  # e.g. unpaired labels for a pair objective (a reward model included)
            if exc.field is not None:
                raise
            source = cfg.data.path if what == "training data" else (cfg.data.eval_path or cfg.data.path)
            raise DataError(
                f"{what}: {exc.message}; algorithm '{cfg.algorithm}' trains on {target}",
                file=source,
                field="data.path" if source else "records",
            ) from None

    if schedule not in SAMPLED:  # online and iterative training data are only prompts
        records = as_target(records, "training data")
    if eval_records is not None:
        eval_records = as_target(eval_records, "eval data")
    return records, eval_records


def check_weights(records: list[Any], what: str, source: str | None, *, all_zero: bool = True) -> None:
    """Every row's ``weight`` is finite and in [0, 1e6] (rows given in Python skip the loader's checks), and
    (``all_zero``) not every weight is 0: such a dataset would train as a silent no-op."""
    from ..data.fields import BadRow, check_weight

    weights = []
    for i, record in enumerate(records):
        w = getattr(record, "weight", None)
        if w is None:
            continue
        try:
            weights.append(check_weight(float(w)))
        except (BadRow, TypeError, ValueError) as bad:
            raise DataError(f"{what}: {getattr(bad, 'message', bad)}", file=source, row=i, field="weight") from None
    if all_zero and weights and not any(weights):
        raise DataError(
            f"{what}: every row has weight 0, so training would not change the model", file=source, field="weight"
        )


def annotator_ids(
    records: list[Any], examples: list[Any], eval_records: list[Any] | None, eval_examples: list[Any], data: Any
) -> tuple[list[Any], list[Any]]:
    """Each example with its annotator's index among the training data's sorted annotator names; a pair without
    an annotator (or an eval pair whose annotator never labelled training data) is a one-line DataError."""
    from ..errors import DataError

    def name(record: Any, row: int, what: str, source: str | None) -> str:
        who = getattr(record, "annotator", None)
        if not who:
            raise DataError(
                f"{what}: a mixture reward model (maxmin_em) needs the annotator of every pair",
                file=source,
                row=row,
                field="annotator",
            )
        return str(who)

    ids = {a: i for i, a in enumerate(sorted({name(r, i, "training data", data.path) for i, r in enumerate(records)}))}
    train = [replace(ex, annotator=ids[records[ex.index].annotator]) for ex in examples]
    held: list[Any] = []
    offset = len(records)
    for ex in eval_examples:
        row = ex.index - offset
        who = name(eval_records[row], row, "eval data", data.eval_path or data.path)  # type: ignore[index]
        if who not in ids:
            raise DataError(
                f"eval data: annotator '{who}' labelled no training pair, so no group is known for it",
                file=data.eval_path or data.path,
                row=row,
                field="annotator",
            )
        held.append(replace(ex, annotator=ids[who]))
    return train, held
