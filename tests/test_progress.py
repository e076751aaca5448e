"""Progress: ETA from the average rate, plain lines when not on a terminal, a bar within 80 columns."""

from __future__ import annotations

import io

from rich.console import Console

from preflab.progress import Work, clock, eta


def test_eta_is_the_average_time_per_unit_times_the_units_left():
    assert eta(elapsed=120.0, done=4, total=10) == 180.0  # slow units still get an ETA
    assert eta(elapsed=5.0, done=0, total=10) is None and eta(5.0, 2, None) is None
    assert (clock(None), clock(75.4), clock(3725)) == ("-:--", "1:15", "1:02:05")


def test_a_redirected_stage_prints_plain_lines_with_count_rate_and_eta(monkeypatch):
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, force_terminal=False)
    now = [0.0]
    monkeypatch.setattr("preflab.progress.time.monotonic", lambda: now[0])
    with Work("sampling", 40, unit="completions", every_s=5, console=console) as work:
        now[0] = 10.0
        work.advance(10)
        now[0] = 12.0
        work.advance(1)  # within every_s of the last line: no line
        now[0] = 20.0
        work.advance(9, info="batch 2")
        now[0] = 40.0
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "sampling: 10/40 completions, 1.00 completions/s, elapsed 0:10, ETA 0:30"
    assert lines[1] == "sampling: 20/40 completions, batch 2, 1.00 completions/s, elapsed 0:20, ETA 0:20"
    assert lines[2].startswith("sampling: 20/40 completions, batch 2, 0.50 completions/s, elapsed 0:40")


def test_the_terminal_bar_fits_80_columns_with_elapsed_and_eta():
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, force_terminal=True, color_system=None)
    with Work("train", 100, unit="steps", console=console) as work:
        work.update(12, info="loss 0.6931  acc 0.50")
        work.progress.refresh()
    last = [line for line in buffer.getvalue().replace("\r", "\n").splitlines() if "12/100" in line][-1]
    plain = last.split("\x1b[?25h")[-1].strip()
    assert "ETA" in plain and "loss 0.6931" in plain and len(plain) <= 80
