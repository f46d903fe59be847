"""Loads the Airflow stack fixtures for these tests until tests/conftest.py registers them.

``pytest_plugins`` is only allowed in the root conftest, and registering the plugin twice would
define the session fixtures twice (two stacks), so load it here only when nobody else has.
"""

from __future__ import annotations

import pytest

PLUGIN = "tests.fixtures.airflow_stack"


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)
