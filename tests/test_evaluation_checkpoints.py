"""`preflab overopt-run`: a run's checkpoints scored on held-out prompts — KL to the initial policy, proxy and
gold reward per step — as the over-optimisation result the report plots."""

from __future__ import annotations

import pytest

from preflab.evaluation.result import EvalResult


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory, tiny_dir):
    """A LoRA GRPO run of the tiny model against a (random) reward model, checkpoints at steps 2 and 4."""
    from preflab.models import load_reward_model, load_tokenizer
    from preflab.training import train
    from test_training_utils import make_cfg

    root = tmp_path_factory.mktemp("overopt_run")
    tok = load_tokenizer(str(tiny_dir))
    rm_dir = root / "rm"
    load_reward_model(str(tiny_dir), pad_token_id=tok.pad_token_id).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    cfg = make_cfg(
        root / "run",
        "algorithm=grpo",
        f"model.name_or_path={tiny_dir}",
        "lora.enabled=true",
        "lora.r=4",
        "online.judge=reward_model",
        f"online.judge_args={{model: {rm_dir}}}",
        "online.num_prompts=4",
        "online.max_new_tokens=5",
        "online.temperature=1.0",
        "rollout.group_size=4",
        "rollout.prompts_per_rollout=2",
        "train.batch_size=8",
        "train.max_steps=4",
        "train.lr=5e-2",
        "train.save_every=2",
        "train.keep_last=5",
    )
    train(cfg)
    return root / "run", rm_dir, cfg


def test_each_checkpoint_is_scored_on_held_out_prompts(grpo_run, monkeypatch, capsys):
    from fault_helpers import run_cli_output
    from preflab.evaluation.checkpoints import held_out_tasks, training_prompts
    from preflab.evaluation.lm import sample_kl
    from preflab.evaluation.report import build_report
    from preflab.feedback.judges import RewardModelJudge
    from preflab.feedback.tasks import get_suite
    from preflab.models import load_model
    from preflab.training.build import load_policy

    run, rm_dir, cfg = grpo_run
    args = ["overopt-run", str(run), "--proxy", str(rm_dir), "--prompts", "12", "-k", "2"]
    code, out, _ = run_cli_output([*args, "--max-new-tokens", "5", "--seed", "7"], monkeypatch, capsys)
    assert code == 0, out
    res = EvalResult.load(run / "eval" / "overopt_checkpoints.json")
    points = {p.step: p for p in res.overoptimisation.points}
    assert sorted(points) == [0, 2, 4]
    # held out: 12 drawn with seed 7, the run's 4 training prompts (seed 0) left out
    drawn = get_suite("default").tasks(12, seed=7)
    trained = {repr(t.prompt) for t in get_suite("default").tasks(4, seed=0)}
    assert training_prompts(cfg) == trained
    held = held_out_tasks(cfg, "default", 12, 7)
    assert held.dropped == sum(repr(t.prompt) in trained for t in drawn)
    assert [t.prompt for t in held.tasks] == [t.prompt for t in drawn if repr(t.prompt) not in trained]
    assert res.meta["prompts"] == len(held.tasks) and res.meta["dropped_training_prompts"] == held.dropped
    # step 0 is the initial policy: KL 0, and proxy / gold equal to scoring its samples by hand
    policy, tok = load_policy(cfg)
    base = load_model(str(cfg.model.name_or_path)).eval()
    prompts = [t.prompt for t in held.tasks]
    _, samples = sample_kl(
        policy.eval(), base, tok, prompts, n_per_prompt=2, max_new_tokens=5, seed=7, batch_size=16
    )  # the command's batch size: the same draws
    rewards = RewardModelJudge.from_pretrained(str(rm_dir), batch_size=16).score_batch(
        [held.tasks[i] for i in samples.prompt_index], samples.texts
    )
    gold = [held.tasks[i].score(t) for i, t in zip(samples.prompt_index, samples.texts, strict=True)]

    def by_prompt(values):
        means = [
            sum(v for v, j in zip(values, samples.prompt_index, strict=True) if j == i) / 2 for i in range(len(prompts))
        ]
        return sum(means) / len(means)

    assert points[0].kl == pytest.approx(0.0, abs=1e-4)
    assert points[0].proxy == pytest.approx(by_prompt(rewards), abs=1e-6)
    assert points[0].gold == pytest.approx(by_prompt(gold), abs=1e-9)
    assert points[4].kl > 1e-3  # training moved the policy away from π_0
    assert points[4].proxy != pytest.approx(points[0].proxy)
    html = build_report(run).path.read_text()
    assert "gold and proxy reward vs KL" in html


def test_bad_runs_are_one_line_errors(grpo_run, tmp_path, monkeypatch, capsys):
    import shutil

    from fault_helpers import run_cli

    run, rm_dir, _ = grpo_run
    code, line = run_cli(monkeypatch, capsys, "overopt-run", str(tmp_path), "--proxy", str(rm_dir))
    assert code == 2 and "is not a training run directory (no config.yaml)" in line
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "config.yaml", bare / "config.yaml")
    code, line = run_cli(monkeypatch, capsys, "overopt-run", str(bare), "--proxy", str(rm_dir))
    assert code == 2 and "the run has no intact checkpoint" in line
