"""Exceptions. Every message names the thing that is wrong and what to do."""

from __future__ import annotations


class ArmError(Exception):
    """Base class of all mergekit-arm errors."""


class ArmConfigError(ArmError, ValueError):
    """A merge or stream parameter is missing, unknown or out of range."""


class StatisticsError(ArmError):
    """An activation statistics file is missing, unreadable, invalid or mismatched."""


class CalibrationError(ArmError):
    """Calibration data or a model could not be used for calibration."""


class ModelLoadError(ArmError):
    """A path is not a loadable causal language model."""


class NonFiniteError(ArmError, ValueError):
    """An input or output tensor holds NaN or Inf."""
