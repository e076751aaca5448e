"""The quickstart: align a model end to end on CPU and prove it worked against ground truth.

Stages (each resumable, see :mod:`preflab.pipelines.stages`):

1. ``prompts``  — training and held-out tasks from a gold-scored task suite, disjoint by construction;
2. ``samples``  — several completions per training prompt from the initial policy (gold-scored);
3. ``pairs``    — a simulated annotator pool *with label noise* labels pairs of completions;
4. ``train``    — RPO by default (DPO + NLL; any offline pair algorithm in ``algorithm:``) on the pairs, checkpointed;
5. ``eval``     — trained vs initial policy on the held-out prompts under the gold judge: win rate with a
                  bootstrap CI, length-controlled win rate, gold score per family, KL to the initial policy;
6. ``report``   — the self-contained HTML report.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DataError
from ..files import check_output_dir
from .stages import Stages, atomic_write_text, fingerprint
from .tasks import read_tasks, split_tasks

if TYPE_CHECKING:
    from ..config import RunConfig

#: The pair builder's version, part of the pairs stage's fingerprint: a pairs stage finished by an older
#: builder is redone, not reused (version 1 could write empty answers the data layer rejects).
PAIRS_VERSION = 2


@dataclass
class QuickstartResult:
    run_dir: Path
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    report_path: Path | None = None


def _log(msg: str) -> None:
    """One progress line on stderr; ``msg`` is plain text (paths and names may hold ``[...]``)."""
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True).print(Text.assemble(("quickstart ", "bold cyan"), msg))


def valid_pairs(pairs: list, counts: Counter) -> list:
    """The pairs the data layer's own parser accepts; each rejected one is counted under its reason."""
    from ..data.fields import IDENTICAL, BadRow
    from ..data.formats import ParseContext, parse_preference
    from ..data.serialize import record_to_dict

    kept = []
    for p in pairs:
        try:
            parse_preference(record_to_dict(p), ParseContext())
        except BadRow as bad:  # identical texts carry no preference; anything else would fail the train stage
            counts["identical_completions_skipped" if bad.reason == IDENTICAL else f"invalid_pairs_{bad.reason}"] += 1
            continue
        kept.append(p)
    return kept


class Quickstart:
    """Runs the stages in ``cfg.output_dir``; ``run()`` returns a :class:`QuickstartResult`."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.q = cfg.quickstart
        self.dir = check_output_dir(cfg.output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stages = Stages(self.dir)
        self._tok = None
        self._sampled: tuple[int, Any] | None = None  # (round, the policy its samples stage loaded)

    # ------------------------------------------------------------------ helpers
    def tokenizer(self):
        if self._tok is None:
            from ..models import load_tokenizer

            m = self.cfg.model
            self._tok = load_tokenizer(m.name_or_path, trust_remote_code=m.trust_remote_code, revision=m.revision)
        return self._tok

    def base_model(self):
        from ..models import load_model

        m = self.cfg.model
        return load_model(
            m.name_or_path, dtype=m.dtype, trust_remote_code=m.trust_remote_code, revision=m.revision, device=m.device
        )

    # ------------------------------------------------------------------ stages
    def prompts(self) -> dict:
        q = self.q
        train, held, dups = split_tasks(q.suite, q.train_prompts, q.eval_prompts, self.cfg.seed)
        rows = [{"split": "train", "task": t.to_dict()} for t in train]
        rows += [{"split": "eval", "task": t.to_dict()} for t in held]
        atomic_write_text(self.dir / "prompts.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        fams = Counter(t.family for t in train)
        return {"train": len(train), "eval": len(held), "repeated_prompts_dropped": dups, "families": dict(fams)}

    def round_dir(self, r: int) -> Path:
        """Where round ``r`` writes its samples, pairs, checkpoints and ``final/``: the run directory for round 1,
        ``rounds/r<r>/`` after it."""
        return self.dir if r == 1 else self.dir / "rounds" / f"r{r}"

    def round_tasks(self, r: int) -> list:
        """Round ``r``'s share of the training prompts: every R-th one, from the r-th on. The training prompts are
        grouped by family, so every round gets its share of every family (a contiguous share would give each
        round its own families, and each round's adapter would train on tasks the previous one never saw). The
        shares differ by at most one prompt."""
        train, _ = read_tasks(self.dir / "prompts.jsonl")
        return train[r - 1 :: self.q.rounds]

    def round_seed(self, r: int) -> int:
        """Round ``r``'s seed for sampling, annotation and training (round 1: the run's own)."""
        return self.cfg.seed + 1_000 * (r - 1)

    def trained(self, r: int):
        """Round ``r``'s ``final/`` (a LoRA adapter, loaded on its base as the model section says, or a full model)."""
        from ..models import load_model

        m = self.cfg.model
        final = self.round_dir(r) / "final"
        return load_model(str(final), dtype=m.dtype, trust_remote_code=m.trust_remote_code, device=m.device)

    def policy(self, r: int):
        """The policy round ``r`` samples from: the initial model, then the previous round's ``final/``."""
        return self.base_model() if r == 1 else self.trained(r - 1)

    def samples(self, r: int = 1) -> dict:
        from ..feedback import PromptSamples, write_samples
        from ..generation.sampler import SamplingParams, sample
        from ..progress import Work

        q = self.q
        train = self.round_tasks(r)
        self._sampled = None  # an earlier round's model, if its train stage did not run: let it go first
        model, tok = self.policy(r), self.tokenizer()
        params = SamplingParams(
            max_new_tokens=q.max_new_tokens,
            temperature=q.temperature,
            top_p=q.top_p,
            seed=self.round_seed(r),
            n=q.samples_per_prompt,
            batch_size=q.sample_batch_size,
        )
        rows: list = [None] * len(train)
        tokens = 0
        label = "sampling" if q.rounds == 1 else f"sampling (round {r}/{q.rounds})"
        with Work(label, len(train) * q.samples_per_prompt, unit="completions") as bar:

            def done(i: int, comps: list) -> None:  # each prompt as the engine finishes it: progress by completions
                nonlocal tokens
                task, texts = train[i], [c.text for c in comps]
                tokens += sum(c.num_tokens for c in comps)
                rows[i] = PromptSamples(
                    prompt=task.prompt,
                    completions=texts,
                    id=task.id,
                    task=task,
                    gold_scores=[task.score(t) for t in texts],
                    num_tokens=[c.num_tokens for c in comps],
                    finish_reasons=[c.finish_reason for c in comps],
                )
                bar.advance(len(comps), info=f"{tokens:,} tokens")

            # one call over every prompt: continuous batching refills the rows until the last prompt is drawn
            sample(model, tok, [t.prompt for t in train], params, on_prompt_done=done)
        # sampling leaves the weights as loaded: the round's train stage trains this model rather than load it again
        self._sampled = (r, model)
        out = self.round_dir(r)
        out.mkdir(parents=True, exist_ok=True)
        write_samples(rows, out / "samples.jsonl")
        gold = [g for r in rows for g in r.gold_scores]
        return {"completions": len(gold), "tokens": tokens, "mean_gold": sum(gold) / max(1, len(gold))}

    def pairs(self, r: int = 1) -> dict:
        from ..data import save_records
        from ..feedback import annotator_pairs, load_pool, read_samples, usable_samples

        q = self.q
        out = self.round_dir(r)
        counts: Counter = Counter()
        samples = usable_samples(read_samples(out / "samples.jsonl"), counts)
        seed = self.round_seed(r)
        pool = load_pool(q.pool, seed=seed)
        pairs = annotator_pairs(
            samples, pool, strategy=q.pair_strategy, pairs_per_prompt=q.pairs_k(), seed=seed, counts=counts
        )
        kept = valid_pairs(pairs, counts)
        if not kept:
            raise DataError(
                f"no usable preference pairs ({', '.join(f'{k}={v}' for k, v in counts.items())}); "
                "sample more completions per prompt or more tokens",
                file=str(out / "samples.jsonl"),
            )
        save_records(kept, out / "pairs.jsonl")
        flipped = sum(1 for p in kept if p.metadata.get("flipped"))
        return {"pairs": len(kept), "label_flips": flipped, **{k: int(v) for k, v in counts.items()}}

    def train(self, r: int = 1) -> dict:
        from ..data import load_preferences
        from ..training import train

        cfg = self.cfg.model_copy(deep=True)
        out = self.round_dir(r)
        # A round before the last writes its LoRA policy merged (in the base's dtype, the exact fp32 sum a load of the
        # adapter computes): the next round samples from it and trains on it without loading and merging every
        # adapter before it again (1.2-2.2 s per load by rounds 1-4 on a 2-core EPYC). The last round's final/ stays
        # an adapter.
        cfg.train.merge_lora = cfg.train.merge_lora or r < self.q.rounds
        if r > 1:  # a new adapter on the previous round's policy, which is also its (cached) reference
            cfg.output_dir = str(out)
            cfg.model.name_or_path = str((self.round_dir(r - 1) / "final").resolve())
            cfg.model.revision = None
            cfg.seed = self.round_seed(r)
        # An interrupted training stage continues where it stopped; checkpoints of other inputs (a changed
        # train.lr, new pairs) are moved to history/ and training starts afresh (see preflab.training.rundir).
        cfg.train.resume = "auto"
        records = load_preferences(out / "pairs.jsonl").records
        model = None
        if self._sampled is not None and self._sampled[0] == r:  # the policy as load_model gave it to the sampler
            model, self._sampled = self._sampled[1], None
        result = train(cfg, records=records, model=model)
        return {
            "steps": result.steps,
            "tokens": result.tokens,
            "tokens_per_s": round(result.tokens_per_s, 1),
            "final_model": str(result.final_model_dir),
            "train_metrics": result.train_metrics,
        }

    def evaluate(self) -> dict:
        from ..evaluation.policies import EvalSampling, evaluate_policies
        from ..feedback import GoldJudge

        q = self.q
        _, held = read_tasks(self.dir / "prompts.jsonl")
        sampling = EvalSampling(
            max_new_tokens=q.max_new_tokens,
            temperature=q.eval_temperature,
            seed=self.cfg.seed + 7,
            batch_size=q.sample_batch_size,
        )
        result = evaluate_policies(  # loaders: the trained policy is let go before the initial model is loaded
            lambda: self.trained(q.rounds),
            self.base_model,
            self.tokenizer(),
            held,
            GoldJudge(held),
            sampling,
            kl_samples_per_prompt=q.kl_samples_per_prompt,
            length_unit="tokens",
            n_bootstrap=q.n_bootstrap,
            seed=self.cfg.seed,
            name="quickstart",
            a_name="trained",
            b_name="initial",
        )
        result.save_to_run(self.dir)
        return summarize(result)

    def report(self) -> dict:
        from ..evaluation import build_report

        rep = build_report(self.dir)
        return {"report": str(rep.path), "missing": list(getattr(rep, "missing", []) or [])}

    # ------------------------------------------------------------------ driver
    def run(self) -> QuickstartResult:
        from ..feedback.tasks import TASKS_VERSION

        c, q = self.cfg, self.q
        if q.rounds > q.train_prompts:
            raise ConfigError(
                f"{q.rounds} rounds need at least as many training prompts (train_prompts is {q.train_prompts})",
                field="quickstart.rounds",
            )
        model_fp = c.model.model_dump()
        fp_prompts = fingerprint("prompts", c.seed, q.suite, q.train_prompts, q.eval_prompts, TASKS_VERSION)
        sampling = (q.samples_per_prompt, q.max_new_tokens, q.temperature, q.top_p, q.sample_batch_size)
        training = (
            c.train.model_dump(exclude={"resume", "progress"}),
            c.objective.model_dump(),
            c.lora.model_dump(),
            c.reference.model_dump(),
        )
        steps = [("prompts", fp_prompts, self.prompts)]
        upstream = fingerprint(fp_prompts, model_fp, *sampling)  # round 1's samples: what one round always used
        if q.rounds > 1:
            upstream = fingerprint(upstream, "rounds", q.rounds, "interleaved")  # not the old contiguous shares
        tags = ["" if r == 1 else f".r{r}" for r in range(1, q.rounds + 1)]  # stage-name suffix of each round
        for r, tag in enumerate(tags, start=1):
            fp_samples = upstream if r == 1 else fingerprint(upstream, "round", r, q.rounds, *sampling)
            fp_pairs = fingerprint(fp_samples, q.pool, q.pair_strategy, q.pairs_k(), PAIRS_VERSION)
            upstream = fingerprint(fp_pairs, *training)  # this round's trained policy
            steps += [
                (f"samples{tag}", fp_samples, lambda r=r: self.samples(r)),
                (f"pairs{tag}", fp_pairs, lambda r=r: self.pairs(r)),
                (f"train{tag}", upstream, lambda r=r: self.train(r)),
            ]
        fp_eval = fingerprint(upstream, q.eval_temperature, q.kl_samples_per_prompt, q.n_bootstrap)
        fp_report = fingerprint(fp_eval, time.time())  # the report is cheap: always rebuilt
        steps += [("eval", fp_eval, self.evaluate), ("report", fp_report, self.report)]
        s = self.stages
        t_all = time.perf_counter()
        info = {}
        for name, fp, fn in steps:
            _log(f"stage {name}")
            info[name] = s.run(name, fp, fn, log=_log)
        timings = dict(s.timings, total=time.perf_counter() - t_all)
        summary = {
            **info["eval"],
            "pairs": sum(info[f"pairs{t}"].get("pairs", 0) for t in tags),
            "train_steps": sum(info[f"train{t}"].get("steps", 0) for t in tags),
        }
        if q.rounds > 1:
            summary["rounds"] = q.rounds
        atomic_write_text(self.dir / "summary.json", json.dumps({"summary": summary, "timings": timings}, indent=2))
        return QuickstartResult(self.dir, summary, timings, Path(info["report"]["report"]))


def summarize(result) -> dict:
    """The headline numbers of a quickstart evaluation as plain JSON."""
    out: dict[str, Any] = {}
    if result.win_rate is not None:
        w = result.win_rate
        out.update(
            win_rate=w.win_rate, win_ci=[w.ci_low, w.ci_high], n_prompts=w.n, wins=w.wins, losses=w.losses, ties=w.ties
        )
    if result.lc_win_rate is not None:
        lc = result.lc_win_rate
        out.update(lc_win_rate=lc.lc_win_rate, lc_ci=[lc.ci_low, lc.ci_high])
    if result.kl is not None:
        out.update(kl=result.kl.kl, kl_se=result.kl.se)
    out["families"] = {
        g.family: {
            "before": g.b.value,
            "after": g.a.value,
            "gain": g.gain.value,
            "gain_ci": [g.gain.ci_low, g.gain.ci_high],
        }
        for g in result.gold
    }
    if result.null_check is not None:
        out["judge_reliable"] = bool(getattr(result.null_check, "reliable", True))
    return out


def run_quickstart(cfg: RunConfig) -> QuickstartResult:
    """Run the quickstart in ``cfg.output_dir``, holding that directory's lock (one run at a time);
    a full disk is a one-line :class:`~preflab.errors.StorageError`."""
    from ..algorithms import get_algorithm
    from ..durable import disk_full_as_error
    from ..runlock import run_lock
    from ..training.lm_algorithms import ACCEPTED_DATA_KINDS

    if "pairs" not in ACCEPTED_DATA_KINDS.get(get_algorithm(cfg.algorithm).data, ()):  # it trains on annotated pairs
        raise ConfigError(
            f"the quickstart trains on the pairs its annotators label; algorithm '{cfg.algorithm}' "
            "does not train on a pair dataset (pick an offline one, e.g. dpo or kto)",
            field="algorithm",
        )
    with run_lock(cfg.output_dir), disk_full_as_error(cfg.output_dir):
        return Quickstart(cfg).run()
