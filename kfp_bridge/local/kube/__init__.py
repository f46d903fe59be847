"""Embedded Kubernetes API + KServe controller stand-in (``kfp-bridge local kube``).

Modules: ``server`` (process: HTTPS API listener + HTTP ingress listener, kubeconfig, auth,
options), ``tls`` (its CA and serving certificate), ``rbac`` (token identities, the RBAC
authorizer over the manifests in ``deploy/``), ``api`` (REST + watch: InferenceServices,
read-only Deployments and Pods, discovery, ``openapi`` for kubectl), ``store`` (objects,
resourceVersion, event log with a time window, SQLite; ``DerivedObjects`` for controller-written
kinds), ``patching``/``filtering`` (PATCH bodies, selectors), ``rollout`` (KServe status rules),
``deployments`` (Standard-mode Deployment and pod status), ``controller`` (revisions, Knative
Service generations, rolling updates, model servers), ``pods`` (controller pods + the KFP
stand-in's executor pods), ``processes`` (model server subprocesses), ``router`` (the ingress:
Host-header and ``/serving/<ns>/<name>/...`` routing), ``admin`` (``/_admin`` test hooks) and
``model_server`` (runs in ``.venv-kserve``; imports nothing from this package).
"""

from __future__ import annotations
