"""Streaming Merging: iterate ARM merges into a trajectory (``arm-stream``).

>>> from mergekit_arm.stream import run_stream
>>> result = run_stream("yaml_examples/stream-fixed-set.yml", "out/")  # doctest: +SKIP
>>> result.model, result.records[-1]["val_loss"]                      # doctest: +SKIP

See ``docs/streaming.md`` for the config reference and the layout of ``out/``.
"""

from __future__ import annotations

from mergekit_arm.stream.config import StreamConfig, load_config, parse_config
from mergekit_arm.stream.driver import StreamResult, run_stream

__all__ = ["StreamConfig", "StreamResult", "load_config", "parse_config", "run_stream"]
