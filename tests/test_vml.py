"""MKL's vector math is set up on one thread when preflab.models is imported (preflab/models/vml.py)."""

from __future__ import annotations

import torch


def test_importing_preflab_models_warms_every_vml_function_once():
    import preflab.models  # noqa: F401  (the import is what warms)
    from preflab.models.vml import FUNCTIONS, warm_vml

    assert warm_vml.cache_info().currsize == 1  # ran once in this process, by the import
    for name in FUNCTIONS:  # every name is a torch function of a float tensor (a typo would skip one silently)
        assert callable(getattr(torch, name)), name


def test_cos_over_many_threads_keeps_vml_high_accuracy():
    """A chunked cos (several threads) is within 1e-6 of float64's; VML's low-accuracy mode, which the race
    produced, is 1.51e-4 off on this range."""
    import preflab.models  # noqa: F401

    x = torch.linspace(0, 40, 16384)
    err = (x.cos().double() - x.double().cos()).abs().max().item()
    assert err < 1e-6, err
