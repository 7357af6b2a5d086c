"""The name of each input's tensor in its own (source) model.

MergeKit hands a merge method one output tensor at a time, named by its OUTPUT name
(``group.metadata.name``). Under ``slices:`` / ``layer_range`` (and ``modules:`` of
multi-module architectures) an input's tensor may come from another layer of its model:
output layer 0 built from ``layer_range: [1, 2]`` reads ``model.layers.1.*``, and each
source of a slice has its own ``layer_range``. Activation statistics are keyed by the
source name, so the kernel must know it.

MergeKit 0.1.5 does not pass it: ``ExecuteMergeMethodTask.execute`` builds the group from
``TensorMetadata.from_weight_info(self.output_weight)`` only. The source names are in the
task's ``gather_tensors`` (a ``GatherTensors`` whose ``weight_info`` maps each model to the
``WeightInfo`` it loads), possibly wrapped by ``PermutedVocabulary`` /
``TruncatedVocabulary`` (both keep it as ``.gather_tensors``). :func:`source_names` finds
the task running in this thread (the kernel is called synchronously inside its
``execute``) by walking the stack, as
:func:`~mergekit_arm.merge_methods.arm_checks.written_dtype` does for the written dtype.
Outside such a task (``merge_state_dicts``, ``merge_tensors``, direct calls) every input's
source name is the output name: state dicts carry no remapping.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from mergekit.merge_methods.base import TensorGroup

from mergekit_arm._stack import find_on_stack


def _running_task() -> Any | None:
    """The ``ExecuteMergeMethodTask`` whose ``execute`` is on this thread's stack, if any."""
    from mergekit.merge_methods.task_adapter import ExecuteMergeMethodTask

    code = ExecuteMergeMethodTask.execute.__code__
    task = find_on_stack(lambda frame: frame.f_locals.get("self", False)
                         if frame.f_code is code else None)
    return task if isinstance(task, ExecuteMergeMethodTask) else None


def _weight_infos(inputs: Any) -> Mapping[Hashable, Any] | None:
    """``model -> WeightInfo`` of a task's tensor input, unwrapping the vocabulary adapters
    (``PermutedVocabulary``, ``TruncatedVocabulary``: ``.gather_tensors``); None for an
    input that carries no per-model names (``TensorDictWrapper``)."""
    from mergekit.io.tasks import GatherTensors

    for _ in range(8):  # adapters wrap a GatherTensors, possibly several deep
        if isinstance(inputs, GatherTensors):
            return dict(inputs.weight_info.items())
        inputs = getattr(inputs, "gather_tensors", None)
        if inputs is None:
            return None
    return None


def source_names(group: TensorGroup) -> dict[Hashable, str]:
    """``entry.id -> name of that input's tensor in its own model`` for every entry of
    ``group`` (the output name where MergeKit says nothing else)."""
    output = group.metadata.name or ""
    names = {entry.id: output for entry in group.entries}
    task = _running_task()
    if task is None or getattr(task.output_weight, "name", None) != group.metadata.name:
        return names
    infos = _weight_infos(task.gather_tensors)
    if infos is None:
        return names
    for model, info in infos.items():
        name = getattr(info, "name", None)
        if model in names and isinstance(name, str) and name:
            names[model] = name
    return names


def vocabulary_realigned(group: TensorGroup) -> bool:
    """Whether MergeKit re-indexed this tensor's vocabulary axis before the kernel got it
    (``tokenizer_source`` / ``tokenizer:``: ``PermutedVocabulary``;
    ``--unsafe-truncate-embeddings``: ``TruncatedVocabulary``): its rows are then no longer
    the checkpoint's, so values recorded from the checkpoint (statistics probes) cannot be
    compared with it. Its input (hidden) axis, which the statistics describe, is unchanged."""
    from mergekit.io.tasks import GatherTensors

    if group.metadata.vocabulary_axis is None:
        return False
    task = _running_task()
    if task is None or getattr(task.output_weight, "name", None) != group.metadata.name:
        return False
    inputs = task.gather_tensors
    return hasattr(inputs, "gather_tensors") and not isinstance(inputs, GatherTensors)


__all__ = ["source_names", "vocabulary_realigned"]
