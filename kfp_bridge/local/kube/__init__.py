"""Embedded Kubernetes API + KServe controller stand-in (``kfp-bridge local kube``).

Modules: ``server`` (process, kubeconfig, auth), ``api`` (InferenceService REST + watch),
``store`` (objects, resourceVersion, event log, SQLite), ``patching``/``filtering`` (PATCH bodies,
selectors), ``rollout`` (KServe status rules), ``controller`` (revisions and model servers),
``processes`` (model server subprocesses), ``router`` (``/serving/<ns>/<name>/...`` ingress),
``admin`` (``/_admin`` test hooks) and ``model_server`` (runs in ``.venv-kserve``; imports nothing
from this package).
"""

from __future__ import annotations
