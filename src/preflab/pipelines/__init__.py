"""End-to-end pipelines built from the stages of the loop (the quickstart first)."""

from .config import QuickstartSection
from .quickstart import Quickstart, QuickstartResult, run_quickstart
from .tasks import split_tasks

__all__ = ["Quickstart", "QuickstartResult", "QuickstartSection", "run_quickstart", "split_tasks"]
