from __future__ import annotations

from typing import Any

import pytest

from .driver import Registry


@pytest.fixture
def registry(client: Any, services: Any) -> Registry:
    return Registry(client, services)
