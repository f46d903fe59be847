"""Session-wide test settings.

kfp.Client computes ~/.config/kfp at import time and may write there, so HOME points at a
temporary directory before anything imports kfp. Airflow gets its own throwaway home too.
"""

from __future__ import annotations

import os
import tempfile

_home = tempfile.mkdtemp(prefix="kfp-bridge-test-home-")
os.environ["HOME"] = _home
os.environ.setdefault("AIRFLOW_HOME", os.path.join(_home, "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

pytest_plugins = [
    "tests.fixtures.kfp_stand_in",
    "tests.fixtures.kube_stand_in",
    "tests.fixtures.airflow_stack",
]
