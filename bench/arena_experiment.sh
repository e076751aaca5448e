#!/bin/bash
# The arena experiment of docs/arena.md. OMP_NUM_THREADS=1, SmolLM2-135M-Instruct (embedded, fp32), CPU.
# Usage: OMP_NUM_THREADS=1 bash bench/arena_experiment.sh [OUT_DIR]; then python bench/arena_tables.py OUT_DIR.
set -ex
P=${PYTHON:-python}
D=${1:-arena_experiment}
mkdir -p $D
T=15; S=3
date -u
$P -m preflab arena train-regret --out $D/rt2.pt --n-actions 2 --horizon 20
for kind in adversarial stochastic nonstationary; do
  $P -m preflab arena run --env experts:$kind --agents hedge,ftrl,exp3,ftl,regret_transformer,llm --regret-transformer $D/rt2.pt -K 2 --horizon $T --seeds $S --out $D/experts_$kind
  date -u
done
$P -m preflab arena run --env bandit --agents exp3,ucb,thompson,uniform,llm -K 2 --horizon $T --seeds $S --out $D/bandit; date -u
$P -m preflab arena run --env duel:condorcet --agents rucb,dts,uniform,llm -K 3 --horizon $T --seeds $S --out $D/duel; date -u
$P -m preflab arena run --env game:rps --agents hedge,exp3,llm --horizon $T --seeds $S --out $D/rps; date -u
$P -m preflab arena run --env game:coordination --agents hedge,exp3,llm --horizon $T --seeds $S --out $D/coordination; date -u
