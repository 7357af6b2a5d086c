"""The one YAML loader of every mergekit-arm config (stream, choose, candidate recipes).

PyYAML's ``SafeLoader`` (no ``!!python`` tags) with three additions, all checked while the
document is composed or constructed, before anything is expanded:

* a bound on the *expanded* size: every node counts once per place it appears, so an
  alias counts as the whole structure it names. An alias bomb (``&a [*b, *b, ...]``
  nested) is refused after a few hundred nodes, in milliseconds, without building it;
* an alias to a node that is still being composed (a recursive structure) is refused, and
  so is nesting deeper than :data:`MAX_DEPTH`;
* a key given twice in one mapping is refused, naming the key and both lines
  (``<<`` merge keys may still be overridden, as YAML intends).

Files over :data:`MAX_BYTES` and files that are not UTF-8 text are refused before parsing.
"""

from __future__ import annotations

import os
import reprlib
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mergekit_arm.errors import ArmConfigError

MAX_BYTES = 1024 * 1024
"""A config file larger than this is refused (ours are a few kilobytes)."""
MAX_NODES = 100_000
"""The most YAML nodes a document may hold once every alias is counted as what it names."""

MAX_DEPTH = 64
"""The deepest nesting of mappings and sequences a document may have (Python's recursion
limit would otherwise end a deeper one with a ``RecursionError``)."""

_SHORT = reprlib.Repr()
_SHORT.maxstring = 240  # a path in full
_SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4
_SHORT.maxlevel = 2


def short_repr(value: Any, limit: int = 300) -> str:
    """``repr(value)`` cut to a few items per level and at most ``limit`` characters, in
    time independent of the size of ``value`` (an error message never expands a big or
    shared structure)."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigYamlError(yaml.YAMLError):
    """A document that parses but is refused (too large once expanded, duplicate key)."""


class ArmSafeLoader(yaml.SafeLoader):
    """``SafeLoader`` that bounds the expanded size and refuses duplicate keys."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._weights: dict[int, int] = {}  # id(node) -> expanded node count
        self._depth = 0
        self._total = 0
        self._aliased = False

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        alias = self.check_event(yaml.AliasEvent)
        mark = self.peek_event().start_mark
        if self._depth >= MAX_DEPTH:
            raise ConfigYamlError(
                f"line {mark.line + 1}: values nested more than {MAX_DEPTH} deep; a config "
                "needs a few levels: check the brackets")
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if alias:
            self._aliased = True
            if id(node) not in self._weights:
                raise ConfigYamlError(
                    f"line {mark.line + 1}: the alias refers to a structure that contains "
                    "it (a recursive structure); write the values out instead")
            weight = self._weights[id(node)]
        elif isinstance(node, SequenceNode):
            weight = 1 + sum(self._weights.get(id(child), 1) for child in node.value)
        elif isinstance(node, MappingNode):
            weight = 1 + sum(self._weights.get(id(key), 1) + self._weights.get(id(value), 1)
                             for key, value in node.value)
        else:
            weight = 1
        self._weights[id(node)] = weight
        self._total += weight if alias else 1  # the expanded size of what is composed so far
        if self._total > MAX_NODES:
            raise ConfigYamlError(
                f"line {mark.line + 1}: the document expands to more than {MAX_NODES} values "
                "(aliases `*name` repeat what `&name` marks; nested ones multiply): refused "
                "without expanding it; write the config without nested aliases"
                if self._aliased else
                f"line {mark.line + 1}: the document holds more than {MAX_NODES} values; a "
                "config holds a few hundred: is it the right file?")
        return node

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, ScalarNode):
                    continue
                key = self.construct_object(key_node, deep=False)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigYamlError(
                        f"line {line}: key `{str(key)[:60]}` is given twice in one "
                        f"mapping (first on line {seen[key]}); remove one of them")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _one_line(error: yaml.YAMLError) -> str:
    """``line L, column C: PROBLEM (CONTEXT)`` of a PyYAML error, on one line."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        context = f" ({error.context})" if error.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}{context}"
    return " ".join(str(error).split())


def load_yaml_text(text: str, source: str, what: str) -> Any:
    """The parsed YAML ``text`` of the ``what`` at ``source``; any problem is one
    :class:`ArmConfigError` naming it."""
    loader = None
    try:
        loader = ArmSafeLoader(text)  # the reader already refuses control characters
        return loader.get_single_data()
    except yaml.YAMLError as error:
        detail = _one_line(error)
        if len(detail) > 600:
            detail = detail[:597] + "..."
        raise ArmConfigError(f"{what} {source} is not valid YAML: {detail}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(path: str | os.PathLike, what: str) -> Any:
    """The parsed YAML of the file ``path`` (a ``what``: "stream config", ...), read with
    :class:`ArmSafeLoader`; a missing, huge, binary or invalid file is one
    :class:`ArmConfigError` naming the file and the fix."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ArmConfigError(f"{what} {file} does not exist")
    try:
        size = file.stat().st_size
        if size > MAX_BYTES:
            raise ArmConfigError(
                f"{what} {file} is {size} bytes, more than a config can be ({MAX_BYTES}); "
                "is it the right file?")
        data = file.read_bytes()
    except OSError as error:
        raise ArmConfigError(f"{what} {file} cannot be read ({error.strerror or error})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ArmConfigError(
            f"{what} {file} is not a UTF-8 text file (byte {error.start} is "
            f"{data[error.start]:#04x}); give the YAML config, not a binary file") from None
    return load_yaml_text(text, str(file), what)


__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "ArmSafeLoader", "ConfigYamlError", "load_yaml_file",
           "load_yaml_text", "short_repr"]
