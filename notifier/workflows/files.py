"""Workflow files: ``NOTIFIER_WORKFLOWS`` names a YAML or TOML file mapping each notification type to
its workflow; the producer, the workers and the gateway read the same file, and a bad one stops
each of them at start with the file, line and step in the message (TOML carries no line numbers, so
there the type and step number alone)::

    comment:
      steps:
        - channel: realtime
        - delay: 15m
        - channel: email
          if: unread
    password_reset:
      critical: true
      steps: [{channel: email}]
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from notifier.config import get_settings
from notifier.errors import WorkflowFileError
from notifier.models import SLUG
from notifier.workflows.model import StepError, Workflow

Lines = dict[tuple[Any, ...], int]


class Workflows(Mapping[str, Workflow]):
    """The workflows by type; :meth:`for_type` answers for any type (the implicit one-step workflow
    for a type without one)."""

    def __init__(self, workflows: dict[str, Workflow] | None = None, source: str = "") -> None:
        self._by_type = workflows or {}
        self.source = source

    def __getitem__(self, type_: str) -> Workflow:
        return self._by_type[type_]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_type)

    def __len__(self) -> int:
        return len(self._by_type)

    def for_type(self, type_: str) -> Workflow:
        return self._by_type.get(type_) or Workflow.implicit(type_)


def load(path: str | Path) -> Workflows:
    """Read and check a workflow file (``.yaml``/``.yml`` or ``.toml``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise WorkflowFileError(f"cannot read the workflows file {path}: {exc.strerror or exc}") from None
    if path.suffix in (".yaml", ".yml"):
        data, lines = _yaml(text, path)
    elif path.suffix == ".toml":
        try:
            data, lines = tomllib.loads(text), {}
        except tomllib.TOMLDecodeError as exc:
            raise WorkflowFileError(f"{path}: not valid TOML: {exc}") from None
    else:
        raise WorkflowFileError(f"{path}: a workflows file ends in .yaml, .yml or .toml")
    return Workflows(build(data, path, lines), str(path))


def build(data: Any, path: str | Path = "<workflows>", lines: Lines | None = None) -> dict[str, Workflow]:
    """Workflows from the file's data: ``{type: {steps: [...], critical: bool}}``."""
    lines = lines or {}
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise WorkflowFileError(f"{path}: the file maps notification types to workflows "
                                "(type: {steps: [...]}), not a list or a value")
    workflows = {}
    for type_, spec in data.items():
        where = _where(path, lines, (type_,))
        if not isinstance(type_, str) or not re.fullmatch(SLUG, type_):
            raise WorkflowFileError(f"{where}: {type_!r} is not a notification type (a slug like comment)")
        if not isinstance(spec, Mapping) or "steps" not in spec:
            raise WorkflowFileError(f"{where}: {type_}: a workflow is a mapping with steps: [...]")
        unknown = sorted(set(spec) - {"steps", "critical"})
        if unknown:
            raise WorkflowFileError(f"{where}: {type_}: unknown field {unknown[0]!r} (a workflow has steps "
                                    "and critical)")
        try:
            workflows[type_] = Workflow.build(type_, spec["steps"], spec.get("critical", False))
        except StepError as exc:
            raise WorkflowFileError(f"{_where(path, lines, (type_, exc.number))}: {type_}, {exc}") from None
        except ValueError as exc:
            raise WorkflowFileError(f"{where}: {type_}: {exc}") from None
    return workflows


def _where(path: str | Path, lines: Lines, at: tuple[Any, ...]) -> str:
    line = lines.get(at) or lines.get(at[:1])
    return f"{path}:{line}" if line else str(path)


def _yaml(text: str, path: Path) -> tuple[Any, Lines]:
    """The document and the line of each type and step (PyYAML's nodes carry their position)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise WorkflowFileError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
    lines: Lines = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[(key.value,)] = key.start_mark.line + 1
            if isinstance(value, yaml.MappingNode):
                for field, steps in value.value:
                    if field.value == "steps" and isinstance(steps, yaml.SequenceNode):
                        for number, item in enumerate(steps.value, 1):
                            lines[(key.value, number)] = item.start_mark.line + 1
    return data, lines


@functools.cache
def _cached(path: str) -> Workflows:
    return load(path) if path else Workflows()


def get_workflows() -> Workflows:
    """This process's workflows, from ``NOTIFIER_WORKFLOWS`` (none when it is empty)."""
    return _cached(get_settings().workflows)
