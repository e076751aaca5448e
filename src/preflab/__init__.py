"""preflab: learning from preference feedback, every objective verified against an exact answer."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("preflab")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"

from .algorithms import ALGORITHMS, Algorithm, get_algorithm
from .config import ModelConfig, RunConfig, load_config
from .data import Demonstration, PreferencePair, Ranking, Unpaired, convert, load_preferences, save_records
from .errors import ConfigError, DataError, ModelNotFoundError, PreflabError, TrainingError

__all__ = [
    "__version__",
    "ALGORITHMS",
    "Algorithm",
    "ConfigError",
    "DataError",
    "Demonstration",
    "ModelConfig",
    "ModelNotFoundError",
    "PreferencePair",
    "PreflabError",
    "Ranking",
    "RunConfig",
    "TrainingError",
    "Unpaired",
    "convert",
    "get_algorithm",
    "load_config",
    "load_preferences",
    "save_records",
    "train",
    "TrainResult",
]


def __getattr__(name: str):
    """``preflab.train`` / ``preflab.TrainResult`` load the training stack (torch, accelerate) on first use."""
    if name in ("train", "TrainResult"):
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module 'preflab' has no attribute {name!r}")
