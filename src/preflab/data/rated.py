"""Rated completions (the UltraFeedback layout) and explicit rankings, parsed into :class:`Ranking`.

UltraFeedback (Cui et al. 2023) stores, per row, an ``instruction`` and a list of ``completions``, each
with its ``response`` text, an ``overall_score``, a ``fine-grained_score`` (the mean of the four aspect
ratings) and the raw ``annotations`` (``{"helpfulness": {"Rating": "4", ...}, "honesty": ...}``; a
rating may be ``"N/A"``). A completion's score is taken from the first present of :data:`SCORE_KEYS`
(or the key named by ``score_key``); failing those, the mean of its numeric ``ratings`` /
``annotations[*].Rating``. Note that HuggingFaceH4's ``ultrafeedback_binarized`` switched from
``overall_score`` to the fine-grained mean after ``overall_score`` was found unreliable for some rows:
pass ``score_key="fine-grained_score"`` to do the same.

The flat layout ``{"prompt", "responses" | "completions": [texts], "scores" | "ratings" | "ranks": [...]}``
is the ``ranking`` format (what :func:`preflab.data.save_records` writes for rankings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .fields import (
    LENGTH_MISMATCH,
    MISSING_FIELD,
    TOO_FEW_RESPONSES,
    WRONG_TYPE,
    BadRow,
    check_number,
    check_text,
    first_present,
    get_id,
    get_metadata,
    get_str,
    require,
)
from .records import Ranking, Text

PROMPT_KEYS = ("prompt", "instruction", "question")
RESPONSE_KEYS = ("response", "text", "completion", "output", "content")
SCORE_KEYS = ("score", "overall_score", "fine-grained_score", "rating")
LIST_RESPONSE_KEYS = ("responses", "completions")
LIST_SCORE_KEYS = ("scores", "ratings", "rewards")
_COMMON = {"id", "annotator", "group", "metadata"}


def get_prompt(row: Mapping[str, Any], typed: bool) -> tuple[str, Text]:
    name = first_present(row, PROMPT_KEYS, typed) or "prompt"
    return name, check_text(require(row, name), name)


def _completion_score(comp: Mapping[str, Any], where: str, score_key: str | None, typed: bool) -> float:
    keys = (score_key,) if score_key else SCORE_KEYS
    for key in keys:
        if comp.get(key) is not None:
            return check_number(comp[key], f"{where}.{key}", typed)
    ratings: list[tuple[str, Any]] = []
    if score_key is None:
        raw = comp.get("ratings")
        if isinstance(raw, Mapping):
            ratings = [(f"ratings.{k}", v) for k, v in raw.items()]
        elif isinstance(raw, list):
            ratings = [(f"ratings[{i}]", v) for i, v in enumerate(raw)]
        elif isinstance(comp.get("annotations"), Mapping):
            for aspect, ann in comp["annotations"].items():
                value = ann.get("Rating") if isinstance(ann, Mapping) else ann
                ratings.append((f"annotations.{aspect}.Rating", value))
    numbers = []
    for name, value in ratings:
        if value is None or (isinstance(value, str) and value.strip().upper() in {"N/A", "NA", ""}):
            continue  # an aspect the annotator did not rate
        numbers.append(check_number(value, f"{where}.{name}", typed=False))
    if numbers:
        return sum(numbers) / len(numbers)
    wanted = score_key or " / ".join(SCORE_KEYS + ("ratings", "annotations"))
    raise BadRow(MISSING_FIELD, f"completion has no score ({wanted})", where)


def parse_rated(row: Mapping[str, Any], typed: bool = True, score_key: str | None = None) -> Ranking:
    """A row with ``completions``: a list of ``{response, score/ratings...}`` objects."""
    _, prompt = get_prompt(row, typed)
    comps = require(row, "completions")
    if not isinstance(comps, list):
        raise BadRow(WRONG_TYPE, f"expected a list of rated completions, got {type(comps).__name__}", "completions")
    responses: list[Text] = []
    scores: list[float] = []
    models: list[Any] = []
    for i, comp in enumerate(comps):
        where = f"completions[{i}]"
        if not isinstance(comp, Mapping):
            raise BadRow(
                WRONG_TYPE, f"expected an object with a response and its ratings, got {type(comp).__name__}", where
            )
        key = first_present(comp, RESPONSE_KEYS, typed)
        if key is None:
            raise BadRow(MISSING_FIELD, f"completion has none of {', '.join(RESPONSE_KEYS)}", where)
        responses.append(check_text(comp[key], f"{where}.{key}"))
        scores.append(_completion_score(comp, where, score_key, typed))
        models.append(comp.get("model"))
    if len(responses) < 2:
        raise BadRow(TOO_FEW_RESPONSES, f"{len(responses)} completion(s); a ranking needs at least 2", "completions")
    meta = get_metadata(row, set(PROMPT_KEYS) | {"completions", "models"} | _COMMON, typed)
    if any(m is not None for m in models):
        meta["models"] = models
    return Ranking(
        prompt,
        responses,
        scores=scores,
        id=get_id(row, typed=typed),
        annotator=get_str(row, "annotator", typed),
        group=get_str(row, "group", typed),
        metadata=meta,
    )


def parse_ranking(row: Mapping[str, Any], typed: bool = True, score_key: str | None = None) -> Ranking:
    """A flat row: a prompt, a list of responses and a parallel list of scores (or of ranks, 1 = best)."""
    _, prompt = get_prompt(row, typed)
    rkey = first_present(row, LIST_RESPONSE_KEYS, typed) or "responses"
    raw = require(row, rkey)
    if not isinstance(raw, list):
        raise BadRow(WRONG_TYPE, f"expected a list of responses, got {type(raw).__name__}", rkey)
    responses = [check_text(r, f"{rkey}[{i}]") for i, r in enumerate(raw)]
    if len(responses) < 2:
        raise BadRow(TOO_FEW_RESPONSES, f"{len(responses)} response(s); a ranking needs at least 2", rkey)
    skey = (score_key,) if score_key else LIST_SCORE_KEYS
    skey_found = first_present(row, skey, typed)
    scores = ranks = None
    if skey_found is not None:
        scores = [check_number(v, f"{skey_found}[{i}]", typed) for i, v in enumerate(_as_list(row, skey_found))]
        _same_length(scores, responses, skey_found, rkey)
    elif row.get("ranks") is not None:
        ranks = []
        for i, v in enumerate(_as_list(row, "ranks")):
            r = check_number(v, f"ranks[{i}]", typed)
            if r != int(r) or r < 1:
                raise BadRow(WRONG_TYPE, f"rank {v!r} is not a positive integer", f"ranks[{i}]")
            ranks.append(int(r))
        _same_length(ranks, responses, "ranks", rkey)
    else:
        raise BadRow(MISSING_FIELD, f"needs one of {', '.join(skey)} or ranks", skey[0])
    meta = get_metadata(row, set(PROMPT_KEYS) | {rkey, "ranks", *skey} | _COMMON, typed)
    return Ranking(
        prompt,
        responses,
        scores=scores,
        ranks=ranks,
        id=get_id(row, typed=typed),
        annotator=get_str(row, "annotator", typed),
        group=get_str(row, "group", typed),
        metadata=meta,
    )


def _as_list(row: Mapping[str, Any], key: str) -> list[Any]:
    value = row[key]
    if not isinstance(value, list):
        raise BadRow(WRONG_TYPE, f"expected a list, got {type(value).__name__}", key)
    return value


def _same_length(values: list[Any], responses: list[Text], key: str, rkey: str) -> None:
    if len(values) != len(responses):
        raise BadRow(LENGTH_MISMATCH, f"{len(values)} values for {len(responses)} {rkey}", key)
