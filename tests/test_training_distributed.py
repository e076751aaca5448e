"""Two CPU processes (``accelerate launch --multi_gpu --num_processes 2`` on a machine without GPU: gloo) train to
the same weights as one
process at the same global batch: the schedule splits each global micro-batch across processes and DDP
averages their gradients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file

SCRIPT = textwrap.dedent("""
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, {tests!r})
    from safetensors.torch import save_file
    from test_training_utils import make_cfg, synthetic_pairs

    from preflab.models import tiny_model
    from preflab.training import train

    out, per_device = Path(sys.argv[1]), int(sys.argv[2])
    cfg = make_cfg(out, "objective.name=dpo", f"train.batch_size={{per_device}}", "train.grad_accum=2",
                   "train.max_steps=3", "train.lr=3e-3", "train.max_grad_norm=1.0", "train.save_final=false",
                   "train.eval_every=3", "train.eval_batch_size=2", "reference.mode=cached")
    records = synthetic_pairs(12)
    model, tok = tiny_model()
    result = train(cfg, records=records, eval_records=records[:5], model=model, tokenizer=tok)
    # one eval row: the second process has none, and both must still agree on the metrics
    single = train(make_cfg(out / "single", "objective.name=dpo", f"train.batch_size={{per_device}}",
                            "train.max_steps=1",
                            "train.save_final=false"), records=records, eval_records=records[:1], model=model,
                   tokenizer=tok)
    if int(os.environ.get("RANK", "0")) == 0:
        save_file({{k: v.detach().clone() for k, v in model.named_parameters()}}, str(out / "weights.safetensors"))
        (out / "eval_loss.txt").write_text(repr(result.eval_metrics["loss"]))
        (out / "single_eval_loss.txt").write_text(repr(single.eval_metrics["loss"]))
""")


SAMPLED = textwrap.dedent("""
    import json
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, {tests!r})
    from safetensors.torch import save_file
    from test_training_utils import CountingJudge, make_cfg

    from preflab.feedback.judges.reward_model import RewardFnJudge
    from preflab.models import tiny_model
    from preflab.training import train

    out = Path(sys.argv[1])
    rank = int(os.environ.get("RANK", "0"))
    prompts = [f"Name thing {{i}}." for i in range(8)]
    tiny = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    rounds = ["iterative.rounds=2", "iterative.samples_per_prompt=3", "iterative.steps_per_round=2"]
    runs = {{
        "sppo": rounds,
        "nash_md": rounds,
        "online_dpo": ["train.max_steps=3", "online.samples_per_prompt=3"],
        "grpo": ["train.max_steps=4", "rollout.group_size=4", "rollout.prompts_per_rollout=2"],
    }}

    report = {{}}
    for algorithm, extra in runs.items():
        cfg = make_cfg(out / algorithm, f"algorithm={{algorithm}}", "train.batch_size=2", "online.max_new_tokens=6",
                       "online.temperature=1.0", "train.lr=1e-2", "train.save_final=false", *extra)
        model, tok = tiny_model(**tiny)
        judge = CountingJudge()
        if algorithm == "grpo":
            judge = RewardFnJudge(lambda p, r: [len(x) / 10 for x in r], name="length")
        result = train(cfg, records=prompts, model=model, tokenizer=tok, judge=judge)
        weights = {{k: v.detach().clone().contiguous() for k, v in model.named_parameters()}}
        save_file(weights, str(out / f"{{algorithm}}-{{rank}}.safetensors"))
        report[algorithm] = {{"calls": getattr(judge, "calls", None), "steps": result.steps}}
    (out / f"report-{{rank}}.json").write_text(json.dumps(report))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", ACCELERATE_USE_CPU="true")
    return env


def _run(cmd: list[str]) -> None:
    """Run ``cmd``; on failure or a hang, fail with the tail of its output."""
    try:
        proc = subprocess.run(cmd, env=_env(), timeout=300, capture_output=True, text=True)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-3000:]
        pytest.fail(f"timed out after 300 s: {' '.join(cmd[-3:])}\n{tail!r}")
    if proc.returncode != 0:
        pytest.fail(f"exit code {proc.returncode}: {' '.join(cmd[-3:])}\n{proc.stderr[-3000:]}")


def _launcher() -> list[str]:
    # `accelerate launch --cpu` starts several CPU processes only through mpirun; `--multi_gpu` starts them
    # with torchrun, and on a machine without a GPU the trainer's Accelerator(cpu=True) joins them over gloo.
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
    ]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    tests = str(Path(__file__).parent)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=tests))
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, str(script), str(one), "4"])
    _run([*_launcher(), str(script), str(two), "2"])
    a, b = load_file(str(one / "weights.safetensors")), load_file(str(two / "weights.safetensors"))
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    from preflab.models import tiny_model

    initial = dict(tiny_model()[0].named_parameters())
    assert max((a[k] - initial[k]).abs().max().item() for k in a) > 1e-3  # training moved the weights
    assert diff < 1e-5, diff
    # the eval loss (rows split across processes, then reduced) is the same number
    assert float((two / "eval_loss.txt").read_text()) == pytest.approx(
        float((one / "eval_loss.txt").read_text()), abs=1e-6
    )
    assert float((two / "single_eval_loss.txt").read_text()) == pytest.approx(
        float((one / "single_eval_loss.txt").read_text()), abs=1e-5
    )
    # and the metrics of both runs agree step by step
    from preflab.training import read_metrics

    for ra, rb in zip(
        read_metrics(one / "metrics.jsonl", "train"), read_metrics(two / "metrics.jsonl", "train"), strict=True
    ):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-6)
        assert rb["tokens"] == ra["tokens"]


def test_the_gloo_exit_handler_is_registered_once_and_skips_a_process_without_a_group(monkeypatch):
    import atexit

    import preflab.training.build as build

    handlers = []
    monkeypatch.setattr(atexit, "register", handlers.append)
    monkeypatch.setattr(build, "_EXIT_HOOK", [])
    build.destroy_gloo_group_at_exit()
    build.destroy_gloo_group_at_exit()
    assert len(handlers) == 1
    handlers[0]()  # no process group in this process: nothing to tear down, no error


@pytest.mark.slow
def test_sampling_schedules_share_the_sampling_and_keep_the_processes_in_step(tmp_path):
    """Iterative (SPPO), self-play (Nash-MD), online (online DPO) and rollout (GRPO) runs in two processes: both
    end with the same weights, training moved them, and an iterative round's judge calls are split between the
    processes (each judged its share of the round's prompts, none twice)."""
    import json

    script = tmp_path / "run.py"
    script.write_text(SAMPLED.format(tests=str(Path(__file__).parent)))
    _run([*_launcher(), str(script), str(tmp_path)])
    from preflab.models import tiny_model

    initial = dict(
        tiny_model(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)[
            0
        ].named_parameters()
    )
    reports = [json.loads((tmp_path / f"report-{r}.json").read_text()) for r in (0, 1)]
    for algorithm in ("sppo", "nash_md", "online_dpo", "grpo"):
        a = load_file(str(tmp_path / f"{algorithm}-0.safetensors"))
        b = load_file(str(tmp_path / f"{algorithm}-1.safetensors"))
        assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0, algorithm
        assert max((a[k] - initial[k]).abs().max().item() for k in a) > 1e-3, algorithm
        assert reports[0][algorithm]["steps"] == reports[1][algorithm]["steps"] > 0
    # SPPO: 2 rounds × 8 prompts × 3 pairs = 48 judge calls in all, 24 in each process
    assert reports[0]["sppo"]["calls"] == reports[1]["sppo"]["calls"] == 24
    # Nash-MD: each process samples its 2 prompts a step and judges 3 samples against the opponent: 4 steps × 6
    assert reports[0]["nash_md"]["calls"] == reports[1]["nash_md"]["calls"] == 24
