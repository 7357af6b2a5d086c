"""``arm-choose``'s ``OUT/model``: the chosen candidate's model files, hard-linked.

Only what the model needs is taken (:func:`mergekit_arm.model_files.model_files`: weights,
``config.json``, ``generation_config.json``, tokenizer files, the card and custom code),
never a Trainer's optimizer, scheduler or RNG state. Each ``.safetensors`` file is a hard
link to the candidate's where the filesystem allows (no second copy of the weights), else a
copy; every other file (config, tokenizer, ``.bin`` weights) is copied, since its writers
(``save_pretrained``'s JSON files, ``torch.save``, an editor) rewrite a file in place, which
through a link would change the candidate, maybe an input (safetensors writes a new file
and renames it, leaving the link's other name as it was). The card is a new file (the
candidate's card plus the choice section). Linked files keep their mode.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from mergekit_arm._io import atomic_directory
from mergekit_arm.model_files import model_files

logger = logging.getLogger("mergekit_arm.choose")


#: The files hard-linked into ``OUT/model`` (every writer replaces them by a rename).
LINKED_SUFFIX = ".safetensors"


def link_or_copy(source: Path, destination: Path) -> bool:
    """Hard-link ``source`` at ``destination``; copy it where linking fails (another
    filesystem, a filesystem without links, a file of another user). True when linked."""
    try:
        os.link(source, destination)
        return True
    except OSError:
        shutil.copy2(source, destination)
        return False


def write_model_folder(source: Path, target: Path, card_section: str) -> list[str]:
    """Write ``target`` (atomically, replacing it) from the model files of ``source`` with
    ``card_section`` appended to its card; the names of the files left out."""
    files = model_files(source)
    kept = {path.name for path in files}
    left_out = sorted(path.name for path in source.iterdir()
                      if path.name not in kept and not path.name.startswith("."))
    copied = []
    with atomic_directory(target, overwrite=True) as partial:
        for path in files:
            if path.name == "README.md":
                continue
            if path.suffix != LINKED_SUFFIX:
                shutil.copy2(path, partial / path.name)  # written in place by its writers
            elif not link_or_copy(path, partial / path.name):
                copied.append(path.name)
        card = source / "README.md"
        text = card.read_text(encoding="utf-8") if card.is_file() else ""
        (partial / "README.md").write_text(text + card_section, encoding="utf-8")
    if left_out:
        logger.info("%s: left out %s (not model files)", target, ", ".join(left_out))
    if copied:
        logger.info("%s: copied %s (hard links not possible here)", target, ", ".join(copied))
    return left_out


__all__ = ["link_or_copy", "write_model_folder"]
