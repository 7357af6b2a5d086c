"""mergekit-arm: Activation-guided Rotation-aware Merging (ARM) and Streaming Merging.

Importing this package is cheap (no torch, no mergekit); heavy submodules load on
first attribute access. After ``pip install``, ``merge_method: arm`` is registered
with MergeKit automatically when ``mergekit.merge_methods`` is imported. Where the
start-up hook cannot run (``python -S``, ``pip install --target``), call
:func:`register` yourself before merging.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Public name -> module that defines it (loaded lazily, like lm-eval's registry).
_LAZY: dict[str, str] = {
    "arm_update": "mergekit_arm.low_rank_update",
    "principal_rotation": "mergekit_arm.rotation",
    "ActivationStatistics": "mergekit_arm.statistics",
    "LayerStatistics": "mergekit_arm.statistics",
    "load_statistics": "mergekit_arm.statistics",
    "calibrate": "mergekit_arm.calibration",
    "CalibrationOptions": "mergekit_arm.calibration",
    "load_calibration_texts": "mergekit_arm.calibration",
    "run_stream": "mergekit_arm.stream",
    "StreamConfig": "mergekit_arm.stream",
    "StreamResult": "mergekit_arm.stream",
    "ArmError": "mergekit_arm.errors",
}

def register() -> None:
    """Register mergekit-arm's merge methods with MergeKit (idempotent)."""
    from mergekit_arm.merge_methods import register_all

    register_all()


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mergekit_arm' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)


__all__ = ["__version__", "register", *_LAZY]
