"""Fixtures of the chart tests. They run in the tox env ``chart`` only: they need its packages
(helm-python-sdk, kubernetes-validate), not tmq."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from chart_support import VALUE_SETS, Rendering, render_chart, values_of


@pytest.fixture(scope="session")
def rendered() -> dict[str, Rendering]:
    """Each value set of VALUE_SETS rendered once."""
    return {name: render_chart(values_of(name)) for name in VALUE_SETS}


@pytest.fixture(scope="session")
def render() -> Callable[[dict[str, Any] | None], Rendering]:
    """Render with other values: Helm merges them over the chart's defaults."""
    return render_chart
