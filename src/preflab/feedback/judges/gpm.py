"""The general-preference-model judge: P(a ≻ b) = σ(v_aᵀ R v_b / τ) from a GPM trained by ``preflab train``
(``algorithm: gpm``).

Zhang et al. 2024, "Beyond Bradley-Terry Models: A General Preference Model for Language Model Alignment": each
response embeds once as v(x, y) ∈ R^{2k} (the classifier's outputs at its last token, the ``gpm`` head of
:mod:`preflab.models.reward_heads`), and R is skew-symmetric (block-diagonal 90° rotations), so
P(a ≻ b) + P(b ≻ a) = 1 exactly, P(a ≻ a) = ½, and the judge can express cyclic preferences that no reward model
(Bradley–Terry judge) can. Embedding costs one forward per response, not one per pair (PairRM-style pairwise
models need one per pair and order). It compares only: it has no scalar ``score``.
"""

from __future__ import annotations

from ..judge import Judge
from .registry import register_judge
from .reward_model import RewardModelJudge


@register_judge("gpm")
class GPMJudge(RewardModelJudge):
    """A preference-embedding model behind the Judge interface (``judge: gpm``, ``judge_args: {model: DIR}``)."""

    name = "gpm"
    reads_embeddings = True
    score = Judge.score  # no scalar reward: compare only
    score_batch = Judge.score_batch

    @classmethod
    def from_config(cls, *, tasks=(), model=None, trust_remote_code: bool = False, **kwargs) -> Judge:
        """The GPM checkpoint ``model`` (a list is refused: embeddings of different models do not average)."""
        from ...errors import ConfigError

        if not model or isinstance(model, (list, tuple)):
            raise ConfigError("the gpm judge needs model=<checkpoint> (one)", field="judge_args.model")
        return cls.from_pretrained(str(model), trust_remote_code=trust_remote_code, **kwargs)

    def embed_batch(self, prompts: list, responses: list):
        """(N, 2k) preference embeddings v(x, y)."""
        return self.outputs_batch(prompts, responses)

    def compare_batch(self, prompts: list, a: list, b: list) -> list[float]:
        n = len(prompts)
        v = self.embed_batch(list(prompts) * 2, list(a) + list(b))
        return self.head.prob(v[:n], v[n:]).tolist()

    def compare(self, prompt, a, b) -> float:
        return self.compare_batch([prompt], [a], [b])[0]
