"""Where the system tests run: a KFP given by the environment, else the embedded stand-in.

* ``KFP_HOST``: the KFP API URL (e.g. https://kubeflow.example.com/pipeline). Unset: the session
  stand-in, so ``make test`` runs these DAGs too.
* ``KFP_TOKEN`` (a bearer token) or ``KFP_TOKEN_FILE`` (a projected token file, re-read per request).
* ``KFP_NAMESPACE``: the profile namespace (required on multi-user KFP).
* ``KFP_UI_HOST``, ``KFP_VERIFY_SSL`` (``false`` to skip TLS verification), ``KFP_CA_CERT``: optional.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest


def kfp_target(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``kfp`` connection body (Airflow JSON connection form) the system DAGs use."""
    host = os.environ.get("KFP_HOST")
    if not host:
        stand_in = request.getfixturevalue("kfp_stand_in")
        return {"conn_type": "kfp", "host": stand_in.host, "extra": {"token_path": str(stand_in.token_file)}}
    extra: dict[str, Any] = {}
    if os.environ.get("KFP_TOKEN_FILE"):
        extra["token_path"] = os.environ["KFP_TOKEN_FILE"]
    for env, key in (("KFP_NAMESPACE", "namespace"), ("KFP_UI_HOST", "ui_host"), ("KFP_CA_CERT", "ca_cert")):
        if os.environ.get(env):
            extra[key] = os.environ[env]
    if os.environ.get("KFP_VERIFY_SSL", "").lower() in ("false", "0", "no"):
        extra["verify_ssl"] = False
    body: dict[str, Any] = {"conn_type": "kfp", "host": host, "extra": extra}
    if os.environ.get("KFP_TOKEN"):
        body["password"] = os.environ["KFP_TOKEN"]
    return body


@pytest.fixture
def system_connection_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """``AIRFLOW_CONN_KFP_SYSTEM`` for the Airflow process that runs a system DAG."""
    return {"AIRFLOW_CONN_KFP_SYSTEM": json.dumps(kfp_target(request))}
