"""KfpHook: the ``kfp`` connection, authentication, and the KFP v2beta1 calls the operators need.

Sync calls go through the generated ``kfp_server_api`` client (what ``kfp.Client`` wraps) with a
timeout on every request; async calls (for the trigger) use httpx against the same REST paths and
read the connection with Airflow's async connection API, so the triggerer's loop never blocks.
Transient failures are retried by :mod:`kfp_bridge.utils.retry`; any other HTTP error fails at once
with the server's own message. The bearer token is re-read for every request and never logged.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseHook

from kfp_bridge.utils.kfp_connection import (
    KfpConnectionError,
    KfpSettings,
    TokenSource,
    settings_from_connection,
    token_fingerprint,
)
from kfp_bridge.utils.retry import (
    DEFAULT_POLICY,
    RetryPolicy,
    acall_with_retry,
    call_with_retry,
    http_status_of,
)

if TYPE_CHECKING:
    import httpx

    from kfp_bridge.utils.run_tags import TaskIdentity

API = "/apis/v2beta1"
LARGE_BODY_BYTES = 256 * 1024
# The on-call plugin runs inside the api-server: a KFP outage must not pin its threads (issue 13).
CONNECT_TIMEOUT_SECONDS = 5.0
SHORT_POLICY = RetryPolicy(initial_backoff=0.5, max_backoff=2.0, total_budget=4.0, request_timeout=8.0)
# After KFP accepts a retry, the run must leave FAILED/CANCELED within this long (kubeflow/pipelines#11329).
RETRY_CONFIRM_SECONDS = 60.0
# A 409 on retry while the run still reads FAILED can be the report lagging the workflow: ask again this long.
RETRY_409_GRACE_SECONDS = 10.0
TERMINATE_WAIT_SECONDS = 30.0
_SHUTTING_DOWN = frozenset({"CANCELING"})
_RUNNING_AGAIN = frozenset({"PENDING", "RUNNING", "SUCCEEDED", "SKIPPED", "PAUSED"})
_STATE_RANK = {"RUNNING": 5, "PENDING": 5, "CANCELING": 4, "SUCCEEDED": 3, "SKIPPED": 3, "FAILED": 2, "CANCELED": 1}


def encode_filter(filter_: dict[str, Any]) -> str:
    """The ``filter`` query value: JSON, URL-encoded once, because the real server URL-unescapes it
    a second time after the gateway's decoding (fidelity.md K1, ``list_request_util.go``)."""
    return quote(json.dumps(filter_, separators=(",", ":")), safe="")


def pick_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run to adopt among several with one tag: latest ``created_at``, then the most alive state.

    KFP sorts by whole seconds with a random tie-break (K10), so the server's order is not used.
    """
    if not runs:
        return None
    return max(runs, key=lambda run: (_created(run), _STATE_RANK.get(str(run.get("state") or ""), 0), run.get("run_id") or ""))


def _created(run: dict[str, Any]) -> str:
    value = run.get("created_at") or ""
    return value if isinstance(value, str) else value.isoformat()


class KfpRetryError(RuntimeError):
    """KFP would not retry the run, or did not start it again in time; the message says why."""


class KfpApiError(RuntimeError):
    """A KFP API call failed for good; ``status`` is the HTTP code (0 when no answer came)."""

    def __init__(self, action: str, status: int, server_message: str, hint: str = "") -> None:
        self.status = status
        self.server_message = server_message
        text = f"KFP API {action} failed with HTTP {status}: {server_message}"
        super().__init__(f"{text}. {hint}" if hint else text)


def _server_message(body: Any) -> str:
    """The user-facing message of a v2beta1 error body ({code, message, details})."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        return str(body)[:500] if body else "no error body"
    if not isinstance(data, dict):
        return str(data)[:500]
    for detail in data.get("details") or []:
        if isinstance(detail, dict) and detail.get("message"):
            return detail["message"]
    return data.get("message") or data.get("error_message") or json.dumps(data)[:500]


def _hint(status: int, settings: KfpSettings) -> str:
    if status == 401:
        return (
            f"The KFP API rejected the credentials of connection '{settings.conn_id}' "
            f"({settings.token.kind}): check the token or the projected token mount."
        )
    if status == 403:
        return (
            f"The identity behind connection '{settings.conn_id}' may not do this: bind it to the "
            "profile namespace (deploy/rbac) or set the connection extra 'namespace'."
        )
    return ""


class KfpHook(BaseHook):
    """Talks to a Kubeflow Pipelines v2beta1 API.

    :param kfp_conn_id: connection of type ``kfp``: host = API URL, password = static bearer token
        (optional), extras ``token_path``, ``namespace``, ``ui_host``, ``verify_ssl``, ``ca_cert``.
    :param namespace: overrides the connection's ``namespace`` extra.
    :param retry_policy: backoff and budget for transient failures; also sets the request timeout.

    ``on_transient_failure``, when set, is called with a token-free reason before each retry of an
    async call after the first (the triggers' shared poller tells its triggers the API is failing;
    a single failed attempt that its retry mends is only in the hook's own log).
    """

    conn_name_attr = "kfp_conn_id"
    default_conn_name = "kfp_default"
    conn_type = "kfp"
    hook_name = "Kubeflow Pipelines"

    def __init__(
        self,
        kfp_conn_id: str = default_conn_name,
        *,
        namespace: str | None = None,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        super().__init__()
        self.kfp_conn_id = kfp_conn_id
        self.namespace = namespace
        self.retry_policy = retry_policy
        self.on_transient_failure: Callable[[str], None] | None = None
        self._sent_token = ""  # fingerprint of the token the last sync request carried

    # The connection form is declared in get_provider_info ("conn-fields", "ui-field-behaviour"):
    # Airflow 3.2+ deprecates get_connection_form_widgets / get_ui_field_behaviour on hooks.

    # ----- settings and clients ----------------------------------------------------------------
    @cached_property
    def settings(self) -> KfpSettings:
        return self._settings_of(self.get_connection(self.kfp_conn_id))

    async def asettings(self) -> KfpSettings:
        if "settings" not in self.__dict__:
            self.__dict__["settings"] = self._settings_of(await BaseHook.aget_connection(self.kfp_conn_id))
        return self.__dict__["settings"]

    def _settings_of(self, conn: Any) -> KfpSettings:
        settings = settings_from_connection(conn)
        return replace(settings, namespace=self.namespace) if self.namespace else settings

    @cached_property
    def api_client(self) -> Any:
        import kfp_server_api

        settings = self.settings
        config = kfp_server_api.Configuration(host=settings.host)
        # Retries are call_with_retry's (budget, backoff, create-run dedupe); urllib3's own default
        # Retry(3) would repeat a hung or refused request unseen and multiply its time by four.
        config.retries = 0
        config.verify_ssl = settings.verify_ssl
        config.ssl_ca_cert = settings.ca_cert
        if settings.token.kind != "no authentication":
            config.api_key["authorization"] = "placeholder"
            config.api_key_prefix["authorization"] = "Bearer"

            def refresh(configuration: Any) -> None:
                token = settings.token.read()
                self._sent_token = token_fingerprint(token)
                configuration.api_key["authorization"] = token

            config.refresh_api_key_hook = refresh
        return kfp_server_api.ApiClient(config)

    def _api(self, name: str) -> Any:
        import kfp_server_api

        return getattr(kfp_server_api, name)(self.api_client)

    def get_client(self) -> Any:
        """A ``kfp.Client`` on the same connection, for ad-hoc use in user code."""
        import kfp
        from kfp.client import ServiceAccountTokenVolumeCredentials

        settings = self.settings
        kwargs: dict[str, Any] = {"host": settings.host, "ui_host": settings.ui_host, "verify_ssl": settings.verify_ssl}
        if settings.ca_cert:
            kwargs["ssl_ca_cert"] = settings.ca_cert
        if settings.token.static_token:
            kwargs["existing_token"] = settings.token.static_token
        elif settings.token.token_path:
            kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(settings.token.token_path)
        if settings.namespace:
            kwargs["namespace"] = settings.namespace
        return kfp.Client(**kwargs)

    # ----- sync call plumbing -----------------------------------------------------------------
    @property
    def _request_timeout(self) -> tuple[float, float]:
        """(connect, read) seconds: kfp_server_api's REST client ignores a float timeout (it honours
        only an int or a tuple), which left every sync call without any timeout."""
        seconds = self.retry_policy.request_timeout
        return (min(seconds, CONNECT_TIMEOUT_SECONDS), seconds)

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["_request_timeout"] = self._request_timeout

        def attempt() -> Any:
            return fn(*args, **kwargs)

        def on_retry(exc: BaseException, wait: float) -> None:
            self.log.warning("KFP API %s: transient failure (%s); retrying in %.1fs", action, _describe(exc), wait)

        return self._run_sync(action, lambda: call_with_retry(attempt, self.retry_policy, on_retry=on_retry))

    def _run_sync(self, action: str, call: Callable[[], Any]) -> Any:
        """``call`` with its failures as :class:`KfpApiError`; a 401 for a token the file no longer
        holds (rotated while the request was on its way) is sent once more with the new token."""
        for last_chance in (False, True):
            try:
                return call()
            except KfpConnectionError:
                raise
            except Exception as exc:
                if not last_chance and _rotated_in_flight(exc, self.settings.token, self._sent_token):
                    self.log.info("KFP API %s: the token file changed while the request was sent; sending it again", action)
                    continue
                raise self._api_error(action, exc) from None
        raise AssertionError("unreachable")

    def _api_error(self, action: str, exc: BaseException) -> KfpApiError:
        status = http_status_of(exc) or 0
        body = getattr(exc, "body", None)
        message = _server_message(body) if body else _describe(exc)
        return KfpApiError(action, status, message, _hint(status, self.settings))

    # ----- runs --------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> dict[str, Any]:
        api = self._api("RunServiceApi")
        return self._call(f"get run {run_id}", api.run_service_get_run, run_id).to_dict()

    def list_runs(self, *, filter_: dict | None = None, sort_by: str = "created_at desc", page_size: int = 20) -> list[dict]:
        api = self._api("RunServiceApi")
        kwargs: dict[str, Any] = {"sort_by": sort_by, "page_size": page_size}
        if filter_:
            kwargs["filter"] = encode_filter(filter_)
        if self.settings.namespace:
            kwargs["namespace"] = self.settings.namespace
        response = self._call("list runs", api.run_service_list_runs, **kwargs)
        return [run.to_dict() for run in response.runs or []]

    def find_runs_by_tag(self, tag: str) -> list[dict[str, Any]]:
        """Runs whose description is exactly ``tag`` (a filter the real API supports)."""
        predicate = {"operation": "EQUALS", "key": "description", "string_value": tag}
        return self.list_runs(filter_={"predicates": [predicate]}, sort_by="created_at desc", page_size=50)

    def find_run_by_tag(self, tag: str) -> dict[str, Any] | None:
        """The run to adopt for ``tag`` (:func:`pick_run`); several are logged, none is ignored."""
        runs = self.find_runs_by_tag(tag)
        chosen = pick_run(runs)
        if len(runs) > 1 and chosen is not None:
            self.log.warning(
                "%d KFP runs carry tag %s (%s); using %s, the latest created",
                len(runs), tag, ", ".join(f"{r.get('run_id')}={r.get('state')}" for r in runs), chosen["run_id"],
            )
        return chosen

    # ----- the run lifecycle (operator, sensor, trigger and on-call plugin all use these) ----------------
    def find_task_run(self, identity: TaskIdentity, saved_run_id: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
        """This task instance's KFP run and how it was found: by the id it saved, else by its tag
        (a run created by kfp-bridge before 0.3 by the legacy tag), else ``(None, None)``."""
        if saved_run_id:
            try:
                return self.get_run(saved_run_id), "saved run id"
            except KfpApiError as err:
                if err.status != 404:
                    raise
                self.log.warning("Saved KFP run %s no longer exists; looking for the task's runs by tag", saved_run_id)
        for tag, how in ((identity.tag, "run tag"), (identity.legacy_tag, "legacy run tag")):
            found = self.find_run_by_tag(tag)
            if found is not None:
                # ListRuns may leave out run_details: read the run in full.
                return self.get_run(found["run_id"]), how
        return None, None

    def retry_and_confirm(
        self,
        run_id: str,
        *,
        confirm_seconds: float = RETRY_CONFIRM_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> dict[str, Any]:
        """Ask KFP to rerun the failed steps of ``run_id`` and wait until it runs again; the run.

        A 409 is not always "still shutting down" (K5: KFP answers 409 for any workflow that is not
        Failed/Error): the run's state decides. CANCELING waits; running again means someone else
        retried it; FAILED gets a short grace for a lagging report; anything else fails at once.
        """
        started = clock()
        while True:
            try:
                self.retry_run(run_id)
                break
            except KfpApiError as err:
                if err.status != 409:
                    raise
                run = self.get_run(run_id)
                state = str(run.get("state") or "")
                elapsed = clock() - started
                if state in _RUNNING_AGAIN:
                    self.log.info("KFP run %s is already %s again; not retrying it", run_id, state)
                    return run
                if state in _SHUTTING_DOWN and elapsed < confirm_seconds:
                    self.log.info("KFP run %s is still shutting down (%s); retrying when it has stopped", run_id, state)
                elif state == "FAILED" and elapsed < RETRY_409_GRACE_SECONDS:
                    self.log.info("KFP refused the retry of run %s for now (%s); asking again", run_id, err.server_message)
                else:
                    raise KfpRetryError(
                        f"KFP refused to retry run {run_id} (state {state or 'unknown'}): {err.server_message}. "
                        "KFP retries only a run whose workflow has failed; clear the task with "
                        "on_rerun='new_run' to start a new run instead."
                    ) from None
                sleep(1.0)
        while True:
            run = self.get_run(run_id)
            state = str(run.get("state") or "")
            if state not in ("FAILED", "CANCELED"):
                return run
            if clock() - started >= confirm_seconds:
                raise KfpRetryError(
                    f"KFP accepted the retry of run {run_id} but it is still {state} after "
                    f"{confirm_seconds:.0f}s (a known KFP backend issue, kubeflow/pipelines#11329). "
                    "Check the run in the KFP UI; clear the task with on_rerun='new_run' to start afresh."
                )
            sleep(1.0)

    def terminate_and_wait(
        self,
        run_id: str,
        *,
        wait_seconds: float = TERMINATE_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> dict[str, Any]:
        """Terminate ``run_id`` (a run already finished is fine) and wait until it is final; the run.

        KFP 2.17 goes CANCELING → FAILED (K2), so only the caller knows it was terminated.
        """
        try:
            self.terminate_run(run_id)
        except KfpApiError as err:
            if err.status != 400:  # 400: the run had already finished (run_store.TerminateRun)
                raise
        give_up = clock() + wait_seconds
        run = self.get_run(run_id)
        while clock() < give_up and not _final(run):
            sleep(1.0)
            run = self.get_run(run_id)
        return run

    def check_namespace(self) -> None:
        """Fail before any side effect when KFP is multi-user and no namespace is set (K9)."""
        settings = self.settings
        if settings.namespace:
            return
        if settings.multi_user:
            raise KfpConnectionError(_namespace_message(settings.conn_id, "its extra 'multi_user' is true"))
        try:
            self.list_runs(page_size=1)
        except KfpApiError as err:
            if err.status == 400 and "namespace" in err.server_message.lower():
                raise KfpConnectionError(
                    _namespace_message(settings.conn_id, f"the server answered: {err.server_message}")
                ) from None
            raise

    def create_run(self, body: dict[str, Any], *, tag: str) -> dict[str, Any]:
        """Create a run; a transient failure is never retried blindly, since the server may have created
        the run before the answer was lost: look for the run's tag first."""
        api = self._api("RunServiceApi")
        action = "create run"

        def attempt() -> Any:
            return api.run_service_create_run(body, _request_timeout=self._request_timeout)

        attempts = 0

        def attempt_once_then_lookup() -> Any:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                existing = self.find_run_by_tag(tag)
                if existing is not None:
                    self.log.info("Run %s was created before the connection failed; using it", existing["run_id"])
                    return existing
            return attempt().to_dict()

        # A 401 means the server created nothing, so sending it again after a rotation is safe.
        return self._run_sync(action, lambda: call_with_retry(attempt_once_then_lookup, self.retry_policy))

    def retry_run(self, run_id: str) -> None:
        api = self._api("RunServiceApi")
        self._call(f"retry run {run_id}", api.run_service_retry_run, run_id)

    def terminate_run(self, run_id: str) -> None:
        api = self._api("RunServiceApi")
        self._call(f"terminate run {run_id}", api.run_service_terminate_run, run_id)

    def pipeline_spec_of(self, run: dict[str, Any]) -> dict[str, Any] | None:
        """The compiled spec a run executes (for step paths): its own, else its pipeline version's."""
        if isinstance(run.get("pipeline_spec"), dict):
            return run["pipeline_spec"]
        reference = run.get("pipeline_version_reference") or {}
        pipeline_id, version_id = reference.get("pipeline_id"), reference.get("pipeline_version_id")
        if not pipeline_id or not version_id:
            return None
        cache = self.__dict__.setdefault("_specs", {})
        if version_id not in cache:
            api = self._api("PipelineServiceApi")
            try:
                version = self._call(
                    f"get pipeline version {version_id}", api.pipeline_service_get_pipeline_version, pipeline_id, version_id
                )
            except KfpApiError as err:
                self.log.warning("Could not read the pipeline spec of run %s (%s); steps named by node", run.get("run_id"), err)
                return None
            cache[version_id] = version.pipeline_spec
        return cache[version_id]

    # ----- executor logs (optional Kubernetes connection to the profile namespace) -------------------
    def log_location_hint(self, run_id: str) -> str:
        """Where a failed step's log is when the message cannot carry it ({step}/{node} filled in later)."""
        namespace = self.settings.namespace or "<profile namespace>"
        return (
            f"its log: kubectl logs -n {namespace} -l pipeline/runid={run_id} -c main, the pod annotated "
            "workflows.argoproj.io/node-name={node} (or the step's Logs tab in the KFP UI); "
            "set kubernetes_conn_id to show the last lines here."
        )

    def step_log_tails(
        self,
        run_id: str,
        steps: Any,
        *,
        kubernetes_conn_id: str,
        lines: int = 20,
        namespace: str | None = None,
        spec: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        """{step path: last ``lines`` of its executor pod's ``main`` container log}.

        Pods are found by KFP's ``pipeline/runid`` label and matched to steps by Argo's node-name
        annotation. Best effort: a step whose log cannot be read gets a line saying why.
        """
        from kfp_bridge.utils.steps import NODE_NAME_ANNOTATION, RUN_ID_LABEL, step_of_node_name

        wanted = {step.name: step for step in steps}
        if not wanted:
            return {}
        try:
            from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

            k8s = KubernetesHook(conn_id=kubernetes_conn_id)
            core = k8s.core_v1_client
            ns = namespace or self.settings.namespace or k8s.get_namespace() or "default"
            pods = core.list_namespaced_pod(ns, label_selector=f"{RUN_ID_LABEL}={run_id}", _request_timeout=30).items
        except Exception as err:
            reason = f"(could not list the run's pods through connection '{kubernetes_conn_id}': {_describe(err)})"
            return dict.fromkeys(wanted, reason)
        latest: dict[str, Any] = {}
        for pod in pods:
            node_name = (pod.metadata.annotations or {}).get(NODE_NAME_ANNOTATION) or ""
            path = next((name for name, step in wanted.items() if step.node_name and step.node_name == node_name), None)
            path = path or step_of_node_name(node_name, spec)
            if path in wanted and (path not in latest or _created_at(pod) >= _created_at(latest[path])):
                latest[path] = pod
        tails: dict[str, str] = {}
        for path in wanted:
            pod = latest.get(path)
            if pod is None:
                tails[path] = f"(no pod labelled {RUN_ID_LABEL}={run_id} belongs to this step in namespace {ns})"
                continue
            try:
                tails[path] = _pod_log_text(core, pod.metadata.name, ns, lines) or "(the log is empty)"
            except Exception as err:
                tails[path] = f"(could not read the log of pod {pod.metadata.name}: {_describe(err)})"
        return tails

    # ----- experiments and pipelines -----------------------------------------------------------
    def ensure_experiment(self, name: str) -> str:
        """The id of experiment ``name``, creating it if needed (a concurrent create is fine)."""
        api = self._api("ExperimentServiceApi")
        namespace = self.settings.namespace or ""
        flt = encode_filter({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": name}]})

        def lookup() -> str | None:
            found = self._call(
                "list experiments", api.experiment_service_list_experiments, filter=flt, namespace=namespace
            )
            return found.experiments[0].experiment_id if found.experiments else None

        if existing := lookup():
            return existing
        body = {"display_name": name, "namespace": namespace}
        try:
            return self._call(f"create experiment {name!r}", api.experiment_service_create_experiment, body).experiment_id
        except KfpApiError as err:
            if err.status == 409 and (existing := lookup()):
                return existing
            raise

    def ensure_pipeline_version(self, spec: dict[str, Any], *, pipeline_name: str, version_name: str) -> tuple[str, str, bool]:
        """(pipeline_id, version_id, uploaded): ``version_name`` (the content hash) is uploaded at most once."""
        pipelines = self._api("PipelineServiceApi")
        by_name = encode_filter({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": pipeline_name}]})
        list_kwargs: dict[str, Any] = {"filter": by_name}
        if self.settings.namespace:
            list_kwargs["namespace"] = self.settings.namespace

        def find_pipeline() -> str | None:
            found = self._call("list pipelines", pipelines.pipeline_service_list_pipelines, **list_kwargs)
            return found.pipelines[0].pipeline_id if found.pipelines else None

        pipeline_id = find_pipeline()
        if pipeline_id is None:
            body: dict[str, Any] = {"display_name": pipeline_name, "name": pipeline_name}
            if self.settings.namespace:
                body["namespace"] = self.settings.namespace
            try:
                pipeline_id = self._call(
                    f"create pipeline {pipeline_name!r}", pipelines.pipeline_service_create_pipeline, body
                ).pipeline_id
            except KfpApiError as err:
                if err.status != 409 or not (pipeline_id := find_pipeline()):
                    raise

        version_filter = encode_filter(
            {"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": version_name}]}
        )

        def find_version() -> str | None:
            found = self._call(
                "list pipeline versions",
                pipelines.pipeline_service_list_pipeline_versions,
                pipeline_id,
                filter=version_filter,
            )
            return found.pipeline_versions[0].pipeline_version_id if found.pipeline_versions else None

        if version_id := find_version():
            return pipeline_id, version_id, False
        uploads = self._api("PipelineUploadServiceApi")
        import yaml

        with tempfile.TemporaryDirectory(prefix="kfp-bridge-") as tmp:
            package = Path(tmp) / f"{version_name}.yaml"
            package.write_text(yaml.safe_dump(spec, sort_keys=True))
            try:
                version = self._call(
                    f"upload pipeline version {version_name!r}",
                    uploads.upload_pipeline_version,
                    str(package),
                    name=version_name,
                    display_name=version_name,
                    pipelineid=pipeline_id,
                )
            except KfpApiError as err:
                if err.status == 409 and (version_id := find_version()):
                    return pipeline_id, version_id, False
                raise
        return pipeline_id, version.pipeline_version_id, True

    def test_connection(self) -> tuple[bool, str]:
        try:
            api = self._api("HealthzServiceApi")
            self._call("healthz", api.healthz_service_get_healthz)
            # healthz needs no auth on real KFP: prove the credentials with a cheap authorised call
            # (which also tells a multi-user server without a namespace).
            self.check_namespace()
            self.list_runs(page_size=1)
        except (KfpApiError, KfpConnectionError) as err:
            return False, str(err)
        return True, f"Connected to {self.settings.host} ({self.settings.token.kind})"

    # ----- async (trigger) path ------------------------------------------------------------------
    async def _arequest(self, method: str, path: str, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        settings = await self.asettings()
        client = await self._aclient()

        sent = [""]  # fingerprint of the token the last attempt carried

        async def attempt() -> dict[str, Any]:
            headers = {"Accept": "application/json", "Content-Type": "application/json"}
            # A file read could stall on a slow volume; keep it off the event loop.
            token = await asyncio.to_thread(settings.token.read)
            sent[0] = token_fingerprint(token)
            if token:
                headers["authorization"] = f"Bearer {token}"
            response = await client.request(method, settings.host + path, headers=headers, params=params)
            response.raise_for_status()
            if not response.content:
                return {}
            if len(response.content) > LARGE_BODY_BYTES:
                # A page of 200 runs can be megabytes; parsing it must not stall the other triggers.
                return await asyncio.to_thread(json.loads, response.content)
            return response.json()

        failures = [0]

        def on_retry(exc: BaseException, wait: float) -> None:
            failures[0] += 1
            self.log.warning("KFP API %s: transient failure (%s); retrying in %.1fs", action, _describe(exc), wait)
            # One failed attempt is often a pooled keep-alive connection the server closed just as
            # it was reused; the waiting tasks' logs hear of it only when the retry fails too.
            if self.on_transient_failure is not None and failures[0] > 1:
                self.on_transient_failure(f"{action}: {_describe(exc)}")

        for last_chance in (False, True):
            try:
                return await acall_with_retry(attempt, self.retry_policy, on_retry=on_retry)
            except KfpConnectionError:
                raise
            except Exception as exc:
                if not last_chance and await asyncio.to_thread(_rotated_in_flight, exc, settings.token, sent[0]):
                    self.log.info("KFP API %s: the token file changed while the request was sent; sending it again", action)
                    continue
                status = http_status_of(exc) or 0
                response = getattr(exc, "response", None)
                message = _server_message(response.text) if response is not None else _describe(exc)
                raise KfpApiError(action, status, message, _hint(status, settings)) from None
        raise AssertionError("unreachable")

    async def _aclient(self) -> httpx.AsyncClient:
        if "_async_client" not in self.__dict__:
            import httpx

            settings = await self.asettings()
            verify: Any = settings.verify_ssl
            if settings.verify_ssl and settings.ca_cert:
                import ssl

                verify = ssl.create_default_context(cafile=settings.ca_cert)
            self.__dict__["_async_client"] = httpx.AsyncClient(
                verify=verify, timeout=httpx.Timeout(self.retry_policy.request_timeout)
            )
        return self.__dict__["_async_client"]

    async def aget_run(self, run_id: str) -> dict[str, Any]:
        return await self._arequest("GET", f"{API}/runs/{run_id}", f"get run {run_id}")

    async def alist_runs(
        self, *, filter_: dict | None = None, page_size: int = 20, page_token: str = "", sort_by: str = ""
    ) -> dict[str, Any]:
        """One ``ListRuns`` page as the API returns it: ``{"runs": [...], "next_page_token": ...}``."""
        params: dict[str, Any] = {"page_size": page_size}
        if page_token:
            params["page_token"] = page_token
        if sort_by:
            params["sort_by"] = sort_by
        if filter_:
            params["filter"] = encode_filter(filter_)
        settings = await self.asettings()
        if settings.namespace:
            params["namespace"] = settings.namespace
        return await self._arequest("GET", f"{API}/runs", "list runs", params=params)

    async def apipeline_spec_of(self, run: dict[str, Any]) -> dict[str, Any] | None:
        """Async :meth:`pipeline_spec_of`."""
        if isinstance(run.get("pipeline_spec"), dict):
            return run["pipeline_spec"]
        reference = run.get("pipeline_version_reference") or {}
        pipeline_id, version_id = reference.get("pipeline_id"), reference.get("pipeline_version_id")
        if not pipeline_id or not version_id:
            return None
        try:
            version = await self._arequest(
                "GET", f"{API}/pipelines/{pipeline_id}/versions/{version_id}", f"get pipeline version {version_id}"
            )
        except KfpApiError as err:
            self.log.warning("Could not read the pipeline spec of run %s (%s); steps named by node", run.get("run_id"), err)
            return None
        spec = version.get("pipeline_spec")
        return spec if isinstance(spec, dict) else None

    async def aterminate_run(self, run_id: str) -> None:
        await self._arequest("POST", f"{API}/runs/{run_id}:terminate", f"terminate run {run_id}")

    async def aterminate_and_wait(
        self,
        run_id: str,
        *,
        wait_seconds: float = TERMINATE_WAIT_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> dict[str, Any]:
        """Async :meth:`terminate_and_wait` for the trigger."""
        try:
            await self.aterminate_run(run_id)
        except KfpApiError as err:
            if err.status != 400:
                raise
        give_up = clock() + wait_seconds
        run = await self.aget_run(run_id)
        while clock() < give_up and not _final(run):
            await sleep(1.0)
            run = await self.aget_run(run_id)
        return run

    async def aclose(self) -> None:
        client = self.__dict__.pop("_async_client", None)
        if client is not None:
            await client.aclose()


def _pod_log_text(core: Any, pod: str, namespace: str, lines: int) -> str:
    """The last ``lines`` of a pod's ``main`` log as text.

    Read raw: kubernetes 36 returns ``read_namespaced_pod_log`` as ``str(bytes)`` (``b'...'``, newlines
    escaped: kubernetes-client/python#2596); the bytes are decoded here, as kubectl shows them.
    """
    response = core.read_namespaced_pod_log(
        pod, namespace, container="main", tail_lines=lines, _request_timeout=30, _preload_content=False
    )
    try:
        return response.data.decode("utf-8", errors="replace")
    finally:
        response.release_conn()


def _created_at(pod: Any) -> str:
    value = getattr(pod.metadata, "creation_timestamp", None)
    return value.isoformat() if hasattr(value, "isoformat") else str(value or "")


def _final(run: dict[str, Any]) -> bool:
    return str(run.get("state") or "") in ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")


def _namespace_message(conn_id: str, why: str) -> str:
    return (
        f"KFP behind connection '{conn_id}' is multi-user ({why}) and the connection has no namespace: "
        "set the connection extra 'namespace' (or the operator's namespace=) to your Kubeflow profile namespace."
    )


def _rotated_in_flight(exc: BaseException, token: TokenSource, sent: str) -> bool:
    """A 401 for a token the file no longer holds: the kubelet swapped it after it was read."""
    if http_status_of(exc) != 401 or not token.rotates:
        return False
    try:
        return token_fingerprint(token.read()) != sent
    except KfpConnectionError:
        return False


def _describe(exc: BaseException) -> str:
    """A short, token-free description of a client exception."""
    status = http_status_of(exc)
    name = type(exc).__name__
    if status:
        return f"{name} HTTP {status}"
    reason = getattr(exc, "reason", None)
    text = str(reason or exc).splitlines()[0] if (reason or str(exc)) else ""
    return f"{name}: {text[:200]}" if text else name
