"""Choosing among recipes (``arm-choose``): build each candidate from the same checkpoints
(an existing model, a ``mergekit-yaml`` config, an ``arm-stream`` config), score each on
held-out text and keep the lowest loss.

>>> from mergekit_arm.choose import run_choose
>>> result = run_choose("yaml_examples/choose.yml", "out/")  # doctest: +SKIP
>>> result.chosen, result.model                            # doctest: +SKIP
"""

from __future__ import annotations

from mergekit_arm.choose.config import (
    CandidateEntry,
    ChooseConfig,
    load_choose_config,
    parse_choose_config,
)
from mergekit_arm.choose.report import CandidateScore
from mergekit_arm.choose.runner import ChooseResult, run_choose

__all__ = ["CandidateEntry", "CandidateScore", "ChooseConfig", "ChooseResult",
           "load_choose_config", "parse_choose_config", "run_choose"]
