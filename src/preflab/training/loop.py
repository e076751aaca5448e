"""The training loop: one loop for every schedule and every objective.

Per optimizer step: ``grad_accum`` micro-batches from the schedule → policy / reference log-probs →
the objective's loss (divided by ``grad_accum``) → backward (gradient all-reduce only on the last
micro-batch) → clip the global gradient norm → AdamW step → learning-rate schedule step. A non-finite
loss or gradient norm stops the run *before* the weights change, with a :class:`TrainingError` naming
the step; checkpoints already on disk are untouched. Accelerate runs the same code on one CPU, one GPU
or several processes (``accelerate launch``); bf16 autocast wraps the forward passes while the weights,
optimizer state and loss stay fp32.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig, dump_config
from ..data.tokenize import TokenizeStats
from ..durable import atomic_write_text, disk_full_as_error, storage_error
from ..errors import StorageError, TrainingError
from ..files import widen_modes
from ..models.compile import uncompile
from ..runlock import run_lock
from . import checkpoint as ckpt
from .build import Parts, build_parts
from .observe import MetricsWriter, ProgressBar, flat_config
from .provenance import write_provenance
from .resume import restore_run
from .step import MetricMeans, evaluate, objective_loss

StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What a finished run produced."""

    output_dir: Path
    final_model_dir: Path | None
    steps: int
    train_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] | None = None
    tokens: int = 0  # tokens the policy read over the whole run (all processes)
    tokens_per_s: float = 0.0  # over this session's optimizer steps (evaluation and checkpoints excluded)
    elapsed_s: float = 0.0  # wall time of this session's loop, evaluation and checkpoints included
    resumed_from: int | None = None
    last_checkpoint: Path | None = None
    tokenize: TokenizeStats | None = None


def train(
    cfg: RunConfig,
    *,
    judge: Any = None,
    records: Any = None,
    eval_records: Any = None,
    model: Any = None,
    tokenizer: Any = None,
    callbacks: Sequence[StepCallback] = (),
) -> TrainResult:
    """Train ``cfg.model`` with ``cfg.objective`` on ``records`` (or ``cfg.data``) and return a :class:`TrainResult`.

    ``judge`` (a :class:`preflab.feedback.Judge`) labels the online schedule's samples. ``model`` /
    ``tokenizer`` replace loading ``cfg.model`` (the model is trained in place). ``callbacks`` are called
    as ``fn(step, metrics)`` after every optimizer step (after its checkpoint, if any).

    The main process holds the lock of ``cfg.output_dir`` for the whole run (:mod:`preflab.runlock`): a
    second run on the same directory raises :class:`~preflab.errors.RunLockedError`.
    """
    with run_lock(cfg.output_dir, enabled=os.environ.get("RANK", "0") == "0"):
        return _train(cfg, judge, records, eval_records, model, tokenizer, callbacks)


def _train(
    cfg: RunConfig,
    judge: Any,
    records: Any,
    eval_records: Any,
    model: Any,
    tokenizer: Any,
    callbacks: Sequence[StepCallback],
) -> TrainResult:
    with disk_full_as_error(cfg.output_dir):
        parts = build_parts(
            cfg, judge=judge, records=records, eval_records=eval_records, model=model, tokenizer=tokenizer
        )
    try:
        return _Loop(cfg, parts, callbacks).run()
    finally:
        parts.release_casts()  # the model (trained in place) goes back to plain layers
        if cfg.train.compile:  # ... and to eager ones: a compiled block would recompile for generation's inputs
            uncompile(parts.policy)
        # Only the trackers are closed here: `Accelerator.end_training()` also destroys the process group,
        # and with gloo that blocked the last rank forever once a faster rank had already exited.
        for tracker in parts.accelerator.trackers:
            tracker.finish()


def _reduce_means(acc: Any, means: MetricMeans) -> dict[str, float]:
    """Example-weighted means across processes (each key weighted by the examples that reported it).

    Processes may hold different keys (one with no eval rows holds none), so the key set is agreed first;
    otherwise the reduce would see tensors of different sizes.
    """
    if acc.num_processes == 1:
        return means.means()
    from accelerate.utils import gather_object

    keys = sorted(set(gather_object(sorted(means.sums))))
    packed = torch.tensor(
        [means.sums.get(k, 0.0) for k in keys] + [means.weights.get(k, 0.0) for k in keys],
        dtype=torch.float64,
        device=acc.device,
    )
    packed = acc.reduce(packed, reduction="sum").cpu()
    n = len(keys)
    return {k: (packed[i] / packed[n + i]).item() if packed[n + i] > 0 else float("nan") for i, k in enumerate(keys)}


class _Loop:
    def __init__(self, cfg: RunConfig, parts: Parts, callbacks: Sequence[StepCallback]):
        self.cfg, self.p, self.callbacks = cfg, parts, callbacks
        self.acc = parts.accelerator
        self.out = Path(cfg.output_dir)
        self.ckpt_root = self.out / "checkpoints"
        self.step, self.tokens, self.resumed_from = 0, 0, None
        self.last_ckpt: Path | None = None
        self.log: MetricsWriter | None = None
        self.eval_metrics: dict[str, float] | None = None

    # ------------------------------------------------------------------ resume / checkpoints
    def _resume(self) -> None:
        resumed = restore_run(self.cfg, self.p, self.ckpt_root)
        if resumed is not None:
            self.step, self.tokens = resumed.step, resumed.tokens
            self.resumed_from, self.last_ckpt = resumed.step, resumed.checkpoint

    def _save(self) -> None:
        from ..models.policy import trainable_state_dict

        if self.log is not None:
            self.log.sync()  # the rows up to this checkpoint are as durable as the checkpoint itself
        schedule = self.p.schedule.state_dict()
        tensors = schedule.pop("tensors", None)  # an iterative round's samples and reference log-probs
        state = {
            "objective": self.cfg.objective.name,
            "schedule": schedule,
            "tokens": self.tokens,
            "world_size": self.acc.num_processes,
        }
        self.last_ckpt = ckpt.save_checkpoint(
            self.ckpt_root,
            self.step,
            model_state=trainable_state_dict(self.p.policy),
            optimizer=self.p.optimizer.optimizer,
            scheduler=self.p.lr_scheduler,
            state=state,
            rank=self.acc.process_index,
            is_main=self.acc.is_main_process,
            barrier=self.acc.wait_for_everyone,
            keep_last=self.cfg.train.keep_last,
            schedule_tensors=tensors,
        )

    def _stop(self, what: str, value: float, micro: int | None = None) -> None:
        where = f"step {self.step}" + (
            f", micro-batch {micro + 1}/{self.cfg.train.grad_accum}" if micro is not None else ""
        )
        good = f"the last good checkpoint is {self.last_ckpt}" if self.last_ckpt else "no checkpoint was written"
        raise TrainingError(
            f"non-finite {what} ({value}) at {where}; the run stopped before updating the weights "
            f"and {good} (lower train.lr or set train.max_grad_norm, then resume)"
        )

    def _all_finite(self, value: torch.Tensor) -> bool:
        bad = torch.tensor([0.0 if bool(torch.isfinite(value.detach()).all()) else 1.0], device=self.acc.device)
        if self.acc.num_processes > 1:
            bad = self.acc.reduce(bad, reduction="sum")
        return bad.item() == 0

    # ------------------------------------------------------------------ one optimizer step
    def _train_step(self) -> dict[str, float]:
        p, train = self.p, self.cfg.train
        means, tokens, extra = MetricMeans(), 0, MetricMeans()
        p.scorer.train()
        for micro in range(train.grad_accum):
            batch = p.schedule.next_batch().to(self.acc.device)
            sync = nullcontext() if micro == train.grad_accum - 1 else self.acc.no_sync(p.scorer)
            with sync:
                loss, metrics = objective_loss(p.spec, p.params, p.scorer, p.reference, batch)
                if not self._all_finite(loss):
                    self._stop("loss", loss.item(), micro)
                self.acc.backward(loss / train.grad_accum)
            means.add({**metrics, "loss": loss}, batch.num_examples)
            extra.add(p.schedule.metrics(), batch.num_examples)
            tokens += batch.sequences.num_tokens
        norm = self.acc.clip_grad_norm_(p.trainable, train.max_grad_norm or float("inf"))
        if not self._all_finite(torch.as_tensor(norm)):
            p.optimizer.zero_grad(set_to_none=True)
            self._stop("gradient norm", float(norm))
        lr = p.lr_scheduler.get_last_lr()[0]
        p.optimizer.step()
        p.lr_scheduler.step()
        p.optimizer.zero_grad(set_to_none=True)
        metrics = _reduce_means(self.acc, means)
        metrics.update(_reduce_means(self.acc, extra))
        total_tokens = torch.tensor([tokens], dtype=torch.float64, device=self.acc.device)
        if self.acc.num_processes > 1:
            total_tokens = self.acc.reduce(total_tokens, reduction="sum")
        metrics.update(lr=lr, grad_norm=float(norm), tokens=int(total_tokens.item()))
        return metrics

    def _evaluate(self) -> dict[str, float]:
        p = self.p
        unwrapped = self.acc.unwrap_model(p.scorer)
        unwrapped.eval()
        with self.acc.autocast():
            return evaluate(
                p.spec,
                p.params,
                unwrapped,
                p.reference,
                p.eval_batches(),
                self.acc.device,
                lambda means: _reduce_means(self.acc, means),
            )

    # ------------------------------------------------------------------ the run
    def run(self) -> TrainResult:
        """Run to ``total_steps``; a failed write (disk full) is one StorageError naming the last good checkpoint."""
        try:
            with disk_full_as_error(self.out):
                return self._run()
        except StorageError as err:
            good = f"the last good checkpoint is {self.last_ckpt}" if self.last_ckpt else "no checkpoint was written"
            raise StorageError(f"{err.message}; {good}", file=err.file) from None

    def _run(self) -> TrainResult:
        cfg, acc, p = self.cfg, self.acc, self.p
        train = cfg.train
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
            if p.start is not None:
                write_provenance(self.out, p.start.provenance)
        self._resume()
        log = self.log = MetricsWriter(self.out / "metrics.jsonl", acc.is_main_process, self.resumed_from)
        if train.report_to:
            acc.init_trackers(train.project_name, config=flat_config(cfg))
        bar = ProgressBar(p.total_steps, self.step, train.progress and acc.is_main_process, cfg.objective.name)
        # throughput counts the time spent in optimizer steps only (not evaluation or checkpointing)
        start = time.perf_counter()
        window_time, window_tokens, session_time, session_tokens = 0.0, 0, 0.0, 0
        metrics: dict[str, float] = {}
        try:
            while self.step < p.total_steps:
                self.step += 1
                t0 = time.perf_counter()
                metrics = self._train_step()
                step_time = time.perf_counter() - t0
                self.tokens += metrics["tokens"]
                window_tokens, window_time = window_tokens + metrics["tokens"], window_time + step_time
                session_tokens, session_time = session_tokens + metrics["tokens"], session_time + step_time
                metrics["tokens_per_s"] = window_tokens / max(window_time, 1e-9)
                metrics["step_time"] = step_time
                if "time/rollout" in metrics:  # the rollout schedule: sampling + judging + scoring this step
                    metrics["time/update"] = step_time - metrics["time/rollout"]
                metrics["epoch"] = getattr(p.schedule, "epoch", 0.0)
                bar.update(self.step, metrics)
                if self.step % train.log_every == 0 or self.step == p.total_steps:
                    log.write(self.step, "train", metrics)
                    if train.report_to:
                        acc.log({f"train/{k}": v for k, v in metrics.items()}, step=self.step)
                    window_time, window_tokens = 0.0, 0
                if p.has_eval and train.eval_every and self.step % train.eval_every == 0:
                    self._log_eval(log)
                if train.save_every and (self.step % train.save_every == 0 or self.step == p.total_steps):
                    self._save()
                for fn in self.callbacks:
                    fn(self.step, metrics)
        finally:
            bar.close()
        if p.has_eval and not (train.eval_every and self.step % train.eval_every == 0 and self.eval_metrics):
            self._log_eval(log)
        elapsed = time.perf_counter() - start
        final = self._save_final() if train.save_final else None
        result = TrainResult(
            self.out,
            final,
            self.step,
            metrics,
            self.eval_metrics,
            self.tokens,
            session_tokens / session_time if session_time > 0 else math.nan,
            elapsed,
            self.resumed_from,
            self.last_ckpt,
            p.tokenize_stats,
        )
        if acc.is_main_process:
            summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}
            atomic_write_text(self.out / "train_summary.json", json.dumps(summary, indent=1, default=str))
        return result

    def _log_eval(self, log: MetricsWriter) -> None:
        self.eval_metrics = self._evaluate()
        log.write(self.step, "eval", self.eval_metrics)
        if self.cfg.train.report_to:
            self.acc.log({f"eval/{k}": v for k, v in self.eval_metrics.items()}, step=self.step)

    def _save_final(self) -> Path:
        """``output_dir/final``, written atomically: a LoRA run's adapter (merged into a model in the base's dtype
        with ``merge_lora: true``; a reward model always merged), a full fine-tune's model; and the tokenizer."""
        import shutil

        from safetensors import SafetensorError

        from ..models.policy import save_model_dir

        final, tmp = self.out / "final", self.out / ".tmp-final"
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            model = self.p.policy
            self.p.release_casts()  # merging changes the base weights: their bf16 copies would go stale
            try:
                save_model_dir(model, tmp, merge=self.cfg.train.merge_lora, model_cfg=self.cfg.model)
                self.p.tokenizer.save_pretrained(tmp)
                widen_modes(tmp)
            except (OSError, SafetensorError) as exc:
                shutil.rmtree(tmp, ignore_errors=True)  # free the space; an earlier `final` stays as it was
                raise storage_error(tmp, exc, "cannot write the final model") from None
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        self.acc.wait_for_everyone()
        return final
