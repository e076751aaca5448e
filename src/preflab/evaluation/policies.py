"""Model-level evaluation: sample answers from two policies, judge them, and collect every number.

:func:`evaluate_policies` samples the answers from two causal LMs (``preflab.generation.sample``, the feedback
lab's sampler, when it is available; otherwise Hugging Face ``generate``), hands them to
:func:`~preflab.evaluation.answers.evaluate_answers` and adds KL(π‖π_ref) from temperature-1 samples of the
policy; :func:`pair_ranking_accuracy` scores preference pairs with both. Either model may be given as a
zero-argument loader: the policy's work comes first, and a policy loaded here is let go before the reference is
loaded. The sampler sees a prompt's text (:func:`~preflab.evaluation.answers.prompt_text`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DataError
from ..launch import release_free_memory
from ..progress import Work
from .answers import (  # re-exported: callers import the answer-level API from here too
    LabeledPrompt,
    evaluate_answers,
    judged_prompt,
    prompt_family,
    prompt_group,
    prompt_text,
)
from .kl import estimate_kl
from .lm import Samples, chat_prompt_ids, policy_logprobs, reference_bf16, sample_completions, sequence_logprobs
from .result import EvalResult

__all__ = [
    "EvalSampling",
    "LabeledPrompt",
    "evaluate_answers",
    "evaluate_policies",
    "judged_prompt",
    "pair_ranking_accuracy",
    "prompt_family",
    "prompt_group",
    "prompt_text",
]


@dataclass
class EvalSampling:
    """How answers are sampled for evaluation (``temperature == 0``: greedy)."""

    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 16


def _sample(model, tokenizer, prompts: list, params: EvalSampling, bf16: bool, prefills=None) -> Samples:
    """Sample one answer per prompt, with token ids: the feedback lab's sampler when present."""
    try:
        from ..generation import SamplingParams, sample
    except ImportError:
        sample = None
    if sample is None:
        return sample_completions(
            model,
            tokenizer,
            prompts,
            max_new_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            batch_size=params.batch_size,
            bf16=bf16,
        )
    sp = SamplingParams(
        max_new_tokens=params.max_new_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        batch_size=params.batch_size,
    )
    comps = [c[0] for c in sample(model, tokenizer, prompts, sp, prefills=prefills)]
    return Samples(
        [chat_prompt_ids(tokenizer, p) for p in prompts],
        [list(c.token_ids) for c in comps],
        [c.text for c in comps],
        list(range(len(prompts))),
    )


@contextlib.contextmanager
def _as_reference(policy, reference):
    """The reference model: ``reference`` itself, or a PEFT policy with its adapters disabled."""
    if reference is not None:
        yield reference
    elif hasattr(policy, "disable_adapter"):
        with policy.disable_adapter():
            yield policy
    else:
        raise DataError("no reference model given, and the policy has no adapters to disable")


def _loaded(model):
    """A model as given, or the model a zero-argument loader returns."""
    import torch

    return model if model is None or isinstance(model, torch.nn.Module) or not callable(model) else model()


def _loaded_here(model, policy, reference) -> bool:
    """Whether ``model`` came from the loader ``policy`` and a reference of its own comes next: then the caller lets
    it go (and hands its memory back) before loading the reference. A PEFT policy without a reference is its own
    reference, with the adapters off."""
    return reference is not None and model is not policy


def evaluate_policies(
    policy,
    reference,
    tokenizer,
    prompts: Sequence,
    judge,
    sampling: EvalSampling | None = None,
    *,
    kl: bool = True,
    kl_samples_per_prompt: int = 1,
    length_unit: str = "chars",
    bf16: bool = True,
    answers_b: Sequence[str] | None = None,
    **kwargs: Any,
) -> EvalResult:
    """Sample answers from ``policy`` (A) and ``reference`` (B), judge them, estimate KL(π‖π_ref).

    Each of ``policy`` and ``reference`` is a model or a zero-argument callable that loads one. Everything the
    policy does (its answers, its KL samples and their log-probs) comes first; a policy given as a loader is then
    let go before the reference is loaded, so the two models never sit in memory side by side. ``reference=None``
    uses a PEFT policy with its adapters disabled. ``answers_b`` reuses the reference's answers (e.g. cached from
    an earlier evaluation). Remaining keyword arguments go to :func:`evaluate_answers` (gold, families,
    group_judges, both_orders, n_bootstrap, name, ...).
    """
    sampling = sampling or EvalSampling()
    texts = [prompt_text(p) for p in prompts]
    with Work("eval", 2 + (answers_b is None) + 2 * kl, unit="stages", every_s=0) as work:
        return _evaluate(
            policy,
            reference,
            tokenizer,
            prompts,
            texts,
            judge,
            sampling,
            work,
            kl=kl,
            kl_samples_per_prompt=kl_samples_per_prompt,
            length_unit=length_unit,
            bf16=bf16,
            answers_b=answers_b,
            **kwargs,
        )


def _evaluate(
    policy,
    reference,
    tokenizer,
    prompts: Sequence,
    texts: list,
    judge,
    sampling: EvalSampling,
    work: Work,
    *,
    kl: bool,
    kl_samples_per_prompt: int,
    length_unit: str,
    bf16: bool,
    answers_b: Sequence[str] | None,
    **kwargs: Any,
) -> EvalResult:
    from ..generation.engine import PrefillStore

    seconds = {"sampling": 0.0, "judging": 0.0, "kl": 0.0}
    t = time.perf_counter()

    def lap(key: str) -> None:
        nonlocal t
        now = time.perf_counter()
        seconds[key] += now - t
        t = now

    work.update(0, f"policy answers to {len(texts)} prompts")
    model = _loaded(policy)
    reuse = sampling.temperature == 1.0 and sampling.top_p == 1.0 and kl_samples_per_prompt == 1
    # the KL samples, when drawn apart from the answers, reuse the answers' prefill of each prompt
    prefills = PrefillStore() if kl and not reuse else None
    a = _sample(model, tokenizer, texts, sampling, bf16, prefills)
    lap("sampling")
    if kl:
        work.advance(1, "policy samples and log-probs for KL")
        kl_samples = (
            a
            if reuse
            else sample_completions(
                model,
                tokenizer,
                texts,
                n_per_prompt=kl_samples_per_prompt,
                max_new_tokens=sampling.max_new_tokens,
                temperature=1.0,
                top_p=1.0,
                seed=sampling.seed + 1,
                batch_size=sampling.batch_size,
                bf16=bf16,
                logprobs=True,  # exact ones from the sampling pass where it can: then only the reference is scored
                prefills=prefills,
            )
        )
        bs = min(sampling.batch_size, 16)  # sequences per scoring forward
        lp = policy_logprobs(model, kl_samples, batch_size=bs, bf16=bf16)
        lap("kl")
    del prefills
    if _loaded_here(model, policy, reference):  # let it go before the reference comes
        model = None
        release_free_memory()
    if answers_b is None or kl:
        with _as_reference(model, _loaded(reference)) as ref:  # after the policy: PEFT disables adapters in place
            if answers_b is None:
                work.advance(1, "reference answers")
                b = _sample(ref, tokenizer, texts, sampling, bf16)
                b_texts, b_lens = b.texts, [len(c) for c in b.completion_ids]
                lap("sampling")
            if kl:
                work.advance(1, "reference log-probs for KL")
                lr = sequence_logprobs(
                    ref,
                    kl_samples.prompt_ids,
                    kl_samples.completion_ids,
                    batch_size=bs,
                    bf16=reference_bf16(kl_samples, bf16),
                )
                lap("kl")
    if answers_b is not None:
        b_texts = list(answers_b)
        b_lens = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in b_texts]
    work.advance(1, "judging and statistics")
    lengths = ([len(c) for c in a.completion_ids], b_lens) if length_unit == "tokens" else None
    result = evaluate_answers(prompts, a.texts, b_texts, judge, lengths=lengths, **kwargs)
    lap("judging")
    if kl:
        result.kl = estimate_kl(
            lp,
            lr,
            lengths=[len(c) for c in kl_samples.completion_ids],
            clusters=kl_samples.prompt_index if kl_samples_per_prompt > 1 else None,
        )
    result.meta.update(
        {
            "sampling": vars(sampling).copy(),
            "length_unit": length_unit,
            "n_prompts": len(prompts),
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
        }
    )
    work.advance(1, "done")
    return result


def _response_text(value: Any) -> str:
    """A response as text: a chat message list's last assistant turn, else the string itself."""
    if isinstance(value, list):
        turns = [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") == "assistant"]
        return turns[-1] if turns else ""
    return str(value)


def pair_ranking_accuracy(
    policy, reference, tokenizer, pairs: Sequence, *, beta: float = 0.1, batch_size: int = 16, bf16: bool = False
):
    """Ranking accuracy of ``policy`` (and its implicit reward against ``reference``) on preference pairs.

    ``pairs`` are :class:`preflab.data.PreferencePair` records; a pair's ``preference_prob`` (when set)
    is taken as the true probability that ``chosen`` is preferred, enabling the idealised rows. Models may be
    zero-argument loaders, as in :func:`evaluate_policies`: the policy scores first and, loaded here, is let go
    before the reference is loaded.
    """
    from .lm import completion_ids
    from .ranking import ranking_accuracy

    if not pairs:
        raise DataError("ranking accuracy needs at least one preference pair")
    prompt_ids = [chat_prompt_ids(tokenizer, prompt_text(p.prompt)) for p in pairs]
    chosen = [completion_ids(tokenizer, _response_text(p.chosen)) for p in pairs]
    rejected = [completion_ids(tokenizer, _response_text(p.rejected)) for p in pairs]
    kw = dict(batch_size=batch_size, bf16=bf16)
    model = _loaded(policy)
    pc, pr = (sequence_logprobs(model, prompt_ids, c, **kw) for c in (chosen, rejected))
    if _loaded_here(model, policy, reference):
        model = None
        release_free_memory()
    with _as_reference(model, _loaded(reference)) as ref:
        rc, rr = (sequence_logprobs(ref, prompt_ids, c, **kw) for c in (chosen, rejected))
    probs = [p.preference_prob for p in pairs]
    true_prob = probs if all(q is not None for q in probs) else None
    return ranking_accuracy(
        pc,
        pr,
        rc,
        rr,
        beta=beta,
        chosen_len=[len(c) for c in chosen],
        rejected_len=[len(c) for c in rejected],
        true_prob=true_prob,
    )
