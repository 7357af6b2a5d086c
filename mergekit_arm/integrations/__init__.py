"""Streaming Merging inside other tools' training loops.

* :mod:`mergekit_arm.integrations.transformers`: ``ARMCallback``, a
  ``transformers.TrainerCallback`` (``Trainer``, TRL's ``SFTTrainer``) that merges every
  checkpoint the Trainer saves as the next step of an ``arm-stream`` watch stream.
  Its config is :mod:`~mergekit_arm.integrations.callback_config`, its open stream
  :mod:`~mergekit_arm.integrations.callback_session`.
"""
