"""The default thread count: the allowed CPUs as physical cores, minus those other processes keep busy."""

from __future__ import annotations

from preflab.threads import apply_default, choose_threads, physical_cores

SMT_CPUINFO = "\n\n".join(f"processor\t: {cpu}\nphysical id\t: 0\ncore id\t\t: {cpu % 2}" for cpu in range(4))


def test_an_idle_machine_uses_every_physical_core():
    assert choose_threads(cpus=2, physical=2, load=0.2).threads == 2
    assert choose_threads(cpus=4, physical=2, load=0.0).threads == 2  # SMT siblings share a core's units


def test_cpus_kept_busy_by_other_processes_are_left_to_them():
    choice = choose_threads(cpus=2, physical=2, load=1.1)
    assert choice.threads == 1 and "1 kept busy by other processes (1.1 CPUs busy)" in choice.reason
    assert choose_threads(cpus=2, physical=2, load=7.0).threads == 1  # never below one
    assert choose_threads(cpus=8, physical=8, load=2.6).threads == 5


def test_physical_cores_counts_smt_siblings_once_and_falls_back_to_the_cpu_count():
    assert physical_cores([0, 1, 2, 3], SMT_CPUINFO) == 2
    assert physical_cores([0, 2], SMT_CPUINFO) == 1  # both are core 0's hyperthreads
    assert physical_cores([0, 1, 5], SMT_CPUINFO) == 3  # a CPU the file does not describe: count CPUs
    assert physical_cores([0, 1], "") == 2


def test_a_user_setting_wins_and_preflab_threads_sets_omp():
    env = {"OMP_NUM_THREADS": "3"}
    apply_default(env)
    assert env["OMP_NUM_THREADS"] == "3"
    env = {"PREFLAB_THREADS": "1", "OMP_NUM_THREADS": "4"}
    apply_default(env)
    assert env["OMP_NUM_THREADS"] == "1"
    env = {}
    apply_default(env)
    assert int(env["OMP_NUM_THREADS"]) >= 1 and env["PREFLAB_THREADS_SOURCE"]


STAT_0 = "cpu  10 0 10 100 0 0 0 0\ncpu0 5 0 5 50 0 0 0 0 0 0\ncpu1 5 0 5 50 0 0 0 0 0 0\nintr 1 2\n"
STAT_1 = "cpu  10 0 10 100 0 0 0 0\ncpu0 95 0 15 50 0 0 0 0 0 0\ncpu1 6 0 5 149 0 0 0 0 0 0\nintr 1 2\n"


def test_busy_cpus_are_measured_from_proc_stat_deltas():
    from preflab.threads import busy_cpus, cpu_times

    before, after = cpu_times(STAT_0, [0, 1]), cpu_times(STAT_1, [0, 1])
    assert before == {0: (10, 60), 1: (10, 60)} and after == {0: (110, 160), 1: (11, 160)}
    assert busy_cpus(before, after) == 1.0 + 1 / 100  # cpu0 fully busy, cpu1 1% busy
    assert cpu_times(STAT_1, [1]) == {1: (11, 160)}  # only the allowed CPUs
