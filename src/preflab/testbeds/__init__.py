"""Exact tabular preference games: games, exact solvers, training of registered objectives on logit tables
with exact expectations or sampled data, and convergence evaluation against the exact answer."""

from .algorithms import ALGORITHMS, Evaluation, evaluate, run_algorithm
from .games import (
    GAME_NAMES,
    PreferenceGame,
    bt_game,
    cyclic_game,
    make_game,
    mixture_game,
    preference_game,
    random_game,
    rps_game,
    two_group_game,
)
from .mixture_em import MixtureFit, fit_reward_mixture
from .policy import TablePolicy, fit
from .sampling import PairSample, sample_group_pairs, sample_pairs, train_on_sample
from .schedules import GameTrainConfig, Trajectory
from .solvers import (
    duality_gap,
    exploitability,
    group_values,
    ipo_optimum,
    kl_divergence,
    kl_optimum,
    maxmin_policy,
    minimax_winner,
    regularized_nash,
    tv_distance,
)

__all__ = [
    "ALGORITHMS",
    "GAME_NAMES",
    "Evaluation",
    "GameTrainConfig",
    "MixtureFit",
    "PairSample",
    "PreferenceGame",
    "TablePolicy",
    "Trajectory",
    "bt_game",
    "cyclic_game",
    "duality_gap",
    "evaluate",
    "exploitability",
    "fit",
    "fit_reward_mixture",
    "group_values",
    "ipo_optimum",
    "kl_divergence",
    "kl_optimum",
    "make_game",
    "maxmin_policy",
    "minimax_winner",
    "mixture_game",
    "preference_game",
    "random_game",
    "regularized_nash",
    "rps_game",
    "run_algorithm",
    "sample_group_pairs",
    "sample_pairs",
    "train_on_sample",
    "tv_distance",
    "two_group_game",
]
