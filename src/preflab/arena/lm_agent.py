"""Language-model agents: a causal LM prompted with the history, its answer parsed into a probability vector.

As in Park et al. (ICLR 2025), the model is told the rules (K actions, what is revealed, that it pays the
expected loss), shown the history — ``raw`` (every round) or ``summary`` (per-action totals and averages,
the paper's summarised-history variant) — and asked for a probability distribution over the actions as a
list of K numbers. The answer is parsed by :func:`parse_distribution`:

1. the first ``[...]`` list in the answer (else the first run of K comma-separated numbers) holding exactly K
   non-negative numbers with a positive sum, normalised to sum 1 (so percentages work);
2. else an answer that is one action index (``"2"``) or names one action only (``"action 2"``, repeated or
   not) is all weight on it;
3. else a **parse failure**: the round is played with the uniform distribution (the stated fallback) and
   counted; the run reports the failure rate.

All LM agents that share one :class:`LMBackend` are answered together: the runner collects every seed's (and
every player's) prompt for the round and makes one batched :func:`preflab.generation.sampler.sample` call.
"""

from __future__ import annotations

import re

import numpy as np

from .agents import Agent, Observation

VARIANTS = ("raw", "summary")
_NUM = re.compile(r"-?\d+(?:\.\d+)?(?:[eE]-?\d+)?")
_LIST = re.compile(r"\[([^\[\]]*)\]")
_NUMBER = r"-?\d+(?:\.\d+)?"
_ACTION = re.compile(r"\baction\s+(\d+)", re.IGNORECASE)


def parse_distribution(text: str, k: int) -> np.ndarray | None:
    """The probability vector an answer states, or None when it cannot be parsed (see the module doc)."""
    m = _LIST.search(text)
    if m:
        body = m.group(1)
    else:
        run = re.search(_NUMBER + r"(?:\s*,\s*" + _NUMBER + "){" + str(k - 1) + "}", text)
        body = run.group(0) if run else ""
    numbers = [float(x) for x in _NUM.findall(body)]
    if len(numbers) == k and all(x >= 0 for x in numbers) and sum(numbers) > 0:
        v = np.asarray(numbers, dtype=np.float64)
        return v / v.sum()
    named = {int(a) for a in _ACTION.findall(text)}
    if not named and re.fullmatch(r"\s*\d+\s*\.?\s*", text):
        named = {int(float(text.strip().rstrip(".")))}
    if len(named) == 1 and 0 <= (a := named.pop()) < k:
        v = np.zeros(k)
        v[a] = 1.0
        return v
    return None


def _fmt(v) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in v) + "]"


class LMBackend:
    """A loaded causal LM and tokenizer with the sampling settings every agent on it shares."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        temperature: float = 0.7,
        max_new_tokens: int | None = None,
        seed: int = 0,
        bf16: bool | None = False,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.temperature, self.max_new_tokens, self.seed, self.bf16 = temperature, max_new_tokens, seed, bf16
        self.calls = 0
        self.stop_ids = self._closing_bracket_ids(tokenizer)

    @staticmethod
    def _closing_bracket_ids(tokenizer) -> tuple[int, ...]:
        """Token ids whose text ends a list (``]``, ``]\\n`` …): decoding stops there, the answer is complete."""
        ids = []
        for tok, idx in tokenizer.get_vocab().items():
            text = tokenizer.convert_tokens_to_string([tok]).strip()
            if text and text.endswith("]") and "[" not in text and len(text) <= 3:
                ids.append(int(idx))
        return tuple(sorted(ids))

    def answer(self, prompts: list, round_seed: int, k: int) -> list[str]:
        from ..generation.sampler import SamplingParams, sample

        params = SamplingParams(
            max_new_tokens=self.max_new_tokens or 6 * k + 6,
            temperature=self.temperature,
            seed=self.seed * 100_003 + round_seed,
            batch_size=max(1, len(prompts)),
            stop_token_ids=self.stop_ids,
            bf16=self.bf16,
        )
        self.calls += 1
        return [c[0].text for c in sample(self.model, self.tokenizer, prompts, params)]

    def act_batch(self, agents: list[LMAgent]) -> list[np.ndarray]:
        """One sampler call for every agent's prompt; each answer parsed (uniform on failure, counted)."""
        out: list[np.ndarray | None] = [None] * len(agents)
        by_k: dict[int, list[int]] = {}
        for i, a in enumerate(agents):
            by_k.setdefault(a.K, []).append(i)
        for k, idx in by_k.items():
            texts = self.answer([agents[i].prompt() for i in idx], agents[idx[0]].t, k)
            for i, text in zip(idx, texts, strict=True):
                out[i] = agents[i].take_answer(text)
        return out


class LMAgent(Agent):
    """A language model as an online learner (experts, bandits, dueling bandits, repeated games)."""

    needs = "lm"

    def __init__(self, backend: LMBackend, variant: str = "raw", name: str = "llm") -> None:
        self.backend, self.variant, self.name = backend, variant, name
        self.batch_group = backend

    def reset(self, n_actions, horizon, rng, feedback: str = "full", role: str = "") -> None:
        super().reset(n_actions, horizon, rng)
        self.feedback, self.role = feedback, role
        self.history: list = []
        self.failures = 0
        self.answers: list[str] = []

    # ------------------------------------------------------------------ prompt
    def rules(self) -> str:
        K = self.K
        base = (
            f"You are playing a repeated decision game with {K} actions, numbered 0 to {K - 1}. "
            "In every round you choose a probability distribution over the actions. "
        )
        if self.feedback == "full":
            what = (
                "Then the loss of every action (a number between 0 and 1) is revealed, and you pay the "
                "expected loss under your distribution."
            )
            if self.role:
                what += (
                    f" You are the {self.role} player of a two-player game; the losses of your actions "
                    "depend on what the other player does."
                )
        elif self.feedback == "bandit":
            what = (
                "Then one action is drawn from your distribution and you see only that action's loss "
                "(0 or 1 or in between). Other actions' losses stay hidden."
            )
        else:
            what = (
                "Then two actions are drawn from your distribution and compete; you see which one won. "
                "Your goal is to put your weight on the action that beats the others."
            )
        goal = " Your goal is to make your total loss as small as possible." if self.feedback != "duel" else ""
        return base + what + goal

    def history_text(self) -> str:
        t, K = len(self.history), self.K
        if t == 0:
            return "No rounds have been played yet."
        if self.feedback == "full":
            if self.variant == "raw":
                return "\n".join(f"Round {s + 1}: losses {_fmt(v)}" for s, v in enumerate(self.history))
            total = np.sum(self.history, axis=0)
            return (
                f"After {t} rounds, the total loss of each action is {_fmt(total)} "
                f"(average per round {_fmt(total / t)})."
            )
        if self.feedback == "bandit":
            if self.variant == "raw":
                return "\n".join(
                    f"Round {s + 1}: you played action {a}, its loss was {loss:.2f}"
                    for s, (a, loss) in enumerate(self.history)
                )
            lines = [f"After {t} rounds:"]
            for a in range(K):
                got = [loss for b, loss in self.history if b == a]
                lines.append(
                    f"action {a}: played {len(got)} times" + (f", average loss {np.mean(got):.2f}" if got else "")
                )
            return "\n".join(lines)
        if self.variant == "raw":
            return "\n".join(
                f"Round {s + 1}: action {i} vs action {j}: action {i if won else j} won"
                for s, (i, j, won) in enumerate(self.history)
            )
        wins = np.zeros((K, K), dtype=int)
        for i, j, won in self.history:
            if i != j:
                wins[(i, j) if won else (j, i)] += 1
        lines = [f"After {t} rounds:"]
        lines += [f"action {a}: won {wins[a].sum()} of {wins[a].sum() + wins[:, a].sum()} duels" for a in range(K)]
        return "\n".join(lines)

    def ask(self, t: int) -> str:
        return (
            f"Round {t + 1}: give your probability distribution over the {self.K} actions as a list of "
            f"{self.K} numbers that sum to 1. Answer with the list only."
        )

    def prompt(self) -> list[dict[str, str]]:
        """System rules; a worked first round showing the answer format (the uniform distribution, the one
        choice that favours no action); then the history and the question for the coming round."""
        demo = "[" + ", ".join(f"{1 / self.K:.2f}" for _ in range(self.K)) + "]"
        return [
            {"role": "system", "content": self.rules()},
            {"role": "user", "content": "No rounds have been played yet.\n\n" + self.ask(0)},
            {"role": "assistant", "content": demo},
            {"role": "user", "content": self.history_text() + "\n\n" + self.ask(len(self.history))},
        ]

    # ------------------------------------------------------------------ acting
    def take_answer(self, text: str) -> np.ndarray:
        self.answers.append(text)
        p = parse_distribution(text, self.K)
        if p is None:
            self.failures += 1
            p = np.full(self.K, 1.0 / self.K)
        return p

    def act(self):
        return self.backend.act_batch([self])[0]

    def update(self, obs: Observation) -> None:
        if obs.duel is not None:
            self.history.append(obs.duel)
        elif self.feedback == "full" and obs.losses is not None:
            self.history.append(np.asarray(obs.losses, dtype=np.float64))
        else:
            self.history.append((obs.action, float(obs.loss)))
        self.t += 1

    def stats(self) -> dict:
        return {
            "parse_failures": self.failures,
            "rounds": len(self.answers),
            "parse_failure_rate": self.failures / max(len(self.answers), 1),
            "fallback": "uniform",
            "answers_head": self.answers[:3],
        }
