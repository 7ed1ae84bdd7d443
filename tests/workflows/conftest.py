"""The workflow tests' worker: one per module, reading that module's workflows (its ``flow_env``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.helpers import Worker, start_worker


@pytest.fixture(scope="module")
def flow_worker(flow_env: dict[str, str]) -> Iterator[Worker]:
    w = start_worker(flow_env)
    yield w
    w.stop()
