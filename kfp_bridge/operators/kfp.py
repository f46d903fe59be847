"""KfpRunOperator: run a compiled Kubeflow pipeline as one Airflow task, safely.

Submit → save the run id (task_state_store) → push the link → wait (sync poll or defer) →
raise with the failed steps, or return the result. A task that runs again (retry, Clear, crashed
worker) first looks for its previous run, by the saved id or by the run's deterministic tag, and
reattaches, returns, or asks KFP to retry only the failed steps; it never submits a duplicate.

Import cost matters: DAG files import this module at parse time (the budget: 20 of these parse
within 5% of 20 EmptyOperators, benchmarks/parse_time.py), so everything only ``execute`` needs —
kfp, kfp_server_api, kubernetes, the hook, run tags, run states, the argument patterns — is
imported or compiled there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseOperator

from kfp_bridge.lineage.mixins import KfpRunLineage
from kfp_bridge.links import KFP_RUN_LINK, LazyLinks, persist_url

if TYPE_CHECKING:
    import re

    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

    from kfp_bridge.hooks.kfp import KfpHook
    from kfp_bridge.utils.run_tags import TaskIdentity
    from kfp_bridge.utils.states import RunStatus

RUN_ID_KEY = "kfp_run_id"
# {"run_id", "reason"} of a run this task terminated (kill, timeout): KFP 2.17 stores it FAILED (K2).
TERMINATED_KEY = "kfp_terminated_by_airflow"
PIPELINE_NAMES_KEY = "kfp_pipeline_names"
ON_RERUN_CHOICES = ("retry", "new_run")
# KFP 2.17 column sizes (backend/src/apiserver/model/experiment.go: Name varchar(128); run.go:
# DisplayName is a plain string, VARCHAR(255) through GORM's DefaultStringSize in
# client_manager/client_manager.go; Namespace varchar(63)). Longer names fail on the server after
# the pipeline was already uploaded.
EXPERIMENT_NAME_MAX = 128
RUN_NAME_MAX = 255
# Keys of the asset event extra a successful run attaches to each Asset in ``outlets``.
ASSET_EXTRA_KEYS = ("kfp_run_id", "kfp_run_url", "pipeline_name", "pipeline_version", "pipeline_version_id", "model_uri")
_PATTERNS = {
    "dns1123_label": r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
    "dns1123_subdomain": r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
    # C0/C1 controls, bidi overrides/isolates and marks (a "Trojan source" name reads differently from
    # what it is), line and paragraph separators, zero-width characters and the BOM.
    "control": r"[\x00-\x1f\x7f-\x9f\u200b\u200e\u200f\u2028-\u202e\u2060-\u2069\ufeff]",
}


@cache
def _pattern(name: str) -> re.Pattern[str]:
    # Compiled on first use: a DAG file imports this module, only execute checks names.
    import re

    return re.compile(_PATTERNS[name])


class KfpRunError(RuntimeError):
    """The KFP run did not succeed; the message names the failed steps and their errors."""


class KfpArgumentError(ValueError):
    """An operator or sensor argument is malformed; the message names the argument, the form and the value."""


def _bad(owner: str, name: str, expected: str, value: Any, fix: str = "") -> KfpArgumentError:
    shown = repr(value) if len(repr(value)) <= 120 else repr(value)[:117] + "..."
    kind = f" (a {type(value).__name__})" if not isinstance(value, (str, type(None))) else ""
    return KfpArgumentError(f"{owner} argument '{name}' must be {expected}; got {shown}{kind}.{' ' + fix if fix else ''}")


def check_positive_seconds(owner: str, name: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise _bad(owner, name, "a number of seconds or a timedelta, greater than 0", value)
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        fix = "Omit it to wait without a limit." if optional else ""
        raise _bad(owner, name, "greater than 0 seconds (and finite)", value, fix)


def check_boolean(owner: str, name: str, value: Any, *, optional: bool = False) -> None:
    if isinstance(value, bool) or (value is None and optional):
        return
    allowed = "True, False or None" if optional else "True or False"
    raise _bad(owner, name, f"a boolean ({allowed})", value, "Pass the Python boolean, not a string or number: 'false' would be read as true.")


def check_conn_id(owner: str, name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip() or _pattern("control").search(value):
        raise _bad(owner, name, "the id of an Airflow connection (a non-empty string)", value)


def check_name(owner: str, name: str, value: Any, *, limit: int, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        fix = "Check the template: it rendered to nothing." if isinstance(value, str) else ""
        raise _bad(owner, name, "a non-empty string", value, fix)
    if len(value) > limit:
        raise _bad(owner, name, f"at most {limit} characters (KFP 2.17's limit), not {len(value)}", value)
    if _pattern("control").search(value):
        raise _bad(owner, name, "free of control characters (newline, tab, NUL, bidi overrides, zero-width, ...)", value)


def check_namespace(owner: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise _bad(
            owner, "namespace", "a Kubeflow profile namespace (non-empty)", value,
            "It rendered to nothing; KFP would silently use another namespace. Fix the template, or drop "
            "namespace= to use the connection's.",
        )
    if len(value) > 63 or not _pattern("dns1123_label").fullmatch(value):
        raise _bad(owner, "namespace", "a Kubernetes namespace name (DNS-1123 label: a-z, 0-9, '-', at most 63)", value)


def check_service_account(owner: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or len(value) > 253 or not _pattern("dns1123_subdomain").fullmatch(value):
        raise _bad(
            owner, "service_account",
            "a Kubernetes service account name (DNS-1123 subdomain: a-z, 0-9, '-', '.', at most 253)", value,
        )


class KfpRunOperator(KfpRunLineage, BaseOperator):
    """Run a Kubeflow Pipelines (v2) pipeline and wait for it.

    :param pipeline: compiled pipeline YAML (absolute, or relative to the DAG file's folder), or
        ``"module:function"`` / ``"file.py:function"`` of a ``@dsl.pipeline`` compiled at run time.
        It is uploaded as a pipeline version named by its content hash, so an unchanged pipeline is
        uploaded once and every run references exactly what is in git.
    :param params: pipeline parameters (templated); checked against the pipeline's inputs before
        anything is submitted. DAG-level Airflow params are not sent unless ``params_from_dag``.
    :param params_from_dag: also take the pipeline's parameters from the DAG's params (as
        resolved for the run: the Trigger form's values or ``dag_run.conf`` override the defaults),
        so ``DAG(params=pipeline_params(...))`` gives on-call a typed form. Only DAG params that are
        pipeline inputs are sent. An input may come from the DAG's params or from ``params``, not
        both; a DAG with none of the pipeline's inputs among its params is refused.
    :param model_uri: where the run leaves the model (templated, e.g. the ``model_dir`` it was
        given). Returned with the result and put on the asset events.
    :param outlets: Airflow assets this task updates (``Asset("kfp://<pipeline>/model")``). A
        successful run attaches to each Asset's event ``extra``: ``kfp_run_id``, ``kfp_run_url``,
        ``pipeline_name``, ``pipeline_version`` (the content-hash version name),
        ``pipeline_version_id`` and ``model_uri``; a DAG scheduled on the asset reads them from
        ``triggering_asset_events``.
    :param experiment: KFP experiment name (templated), created if missing.
    :param run_name: run display name (templated); default ``"<pipeline> <dag_id>.<task_id> <logical date>"``.
    :param namespace: Kubeflow profile namespace (templated); default: the connection's.
    :param kfp_conn_id: ``kfp`` connection.
    :param deferrable: wait in the triggerer instead of a worker slot; default ``[operators] default_deferrable``.
    :param poll_interval: seconds between state checks.
    :param timeout: longest wait (seconds or timedelta); when it passes the run is terminated and the task fails.
    :param enable_caching: force KFP step caching on or off for every step; None keeps the compiled setting.
    :param on_rerun: when this task runs again and its previous run FAILED or was CANCELED:
        ``"retry"`` (default) asks KFP to rerun only the failed steps of that run; ``"new_run"`` submits a new run.
    :param service_account: Kubernetes service account the run's pods use (default: KFP's).
    :param kubernetes_conn_id: optional ``kubernetes`` connection to the profile namespace: when set, a
        failure message carries the last lines of each failed step's ``main`` container log (RBAC:
        pods list, pods/log get; deploy/rbac/kfp-profile-access.yaml). Without it the message says
        where the log is.
    """

    template_fields: Sequence[str] = ("pipeline", "run_name", "experiment", "namespace", "pipeline_params", "model_uri")
    template_fields_renderers = {"pipeline_params": "json"}
    operator_extra_links = LazyLinks(KFP_RUN_LINK)
    ui_color = "#e3f2fd"

    def __init__(
        self,
        *,
        pipeline: str,
        params: dict[str, Any] | None = None,
        experiment: str = "Default",
        run_name: str | None = None,
        namespace: str | None = None,
        kfp_conn_id: str = "kfp_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        timeout: float | timedelta | None = None,
        enable_caching: bool | None = None,
        on_rerun: str = "retry",
        service_account: str | None = None,
        kubernetes_conn_id: str | None = None,
        params_from_dag: bool = False,
        model_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Airflow merges DAG-level params into ``params``; the pipeline's own values are kept apart
        # so they can be templated and checked against the pipeline's declared inputs.
        super().__init__(params=params, **kwargs)
        self.pipeline = pipeline
        self.pipeline_params = _task_level_values(params)
        self.experiment = experiment
        self.run_name = run_name
        self.namespace = namespace
        self.kfp_conn_id = kfp_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.enable_caching = enable_caching
        self.on_rerun = on_rerun
        self.service_account = service_account
        self.kubernetes_conn_id = kubernetes_conn_id
        self.params_from_dag = params_from_dag
        self.model_uri = model_uri

    # Execution state, set by execute: class-level defaults keep 20 operators in a DAG file cheap.
    _run_id: str | None = None
    _hook: KfpHook | None = None
    _store: Any = None
    _spec: dict[str, Any] | None = None
    _pipeline_names: tuple[str | None, str | None] | None = None
    # The sync wait's pause between looks and the clock of deadlines and deferrals (injected: tests
    # replace them; no raw sleep or clock in the loop).
    sleep = staticmethod(time.sleep)
    clock = staticmethod(time.time)

    @classmethod
    def get_serialized_fields(cls) -> frozenset[str]:
        # The on-call view (kfp_bridge.plugins) reads the task's connection from the serialized DAG.
        return super().get_serialized_fields() | {"kfp_conn_id", "kubernetes_conn_id"}

    # ----- execute ------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        # Airflow reads the link's XCom when the task ends; an empty one keeps a task that fails before
        # submitting from logging "XCom not found" errors that would mislead on-call.
        persist_url(context, KFP_RUN_LINK, "")
        prepared = self._prepare(context)  # every check that can fail happens before any side effect
        self._spec = prepared["spec"]
        hook = self._get_hook()
        hook.check_namespace()  # a multi-user KFP without a namespace: fail before creating anything
        identity = self._identity(context)
        store = self._store = context.get("task_state_store")

        run, found_by = hook.find_task_run(identity, store.get(RUN_ID_KEY) if store is not None else None)
        if run is not None:
            self.log.info("Found this task's KFP run %s by its %s", run["run_id"], found_by)
            run = self._resume(hook, run, context, prepared, identity)
        else:
            run = self._submit(hook, context, prepared, identity)
        run_id = run["run_id"]
        self._run_id = run_id
        if store is not None:
            store.set(RUN_ID_KEY, run_id)

        url = hook.settings.run_url(run_id)
        persist_url(context, KFP_RUN_LINK, url)
        self.log.info("KFP run %s: %s", run_id, url)

        status = self._status(hook, run)
        names = {"pipeline_name": prepared["pipeline_name"], "pipeline_version": prepared["version_name"]}
        if status.is_terminal:
            return self._finish(hook, status, context, **names)
        self._forget_terminated(run_id)  # running again (retried): a later failure is its own
        if self.deferrable:
            self._defer(run_id, names)
        return self._finish(hook, self._wait(hook, run_id), context, **names)

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        pipeline_name: str | None = None,
        pipeline_version: str | None = None,
    ) -> dict[str, Any]:
        if not event or "status" not in event:
            raise KfpRunError(f"The KFP trigger returned no usable event ({event!r}).")
        self._store = context.get("task_state_store")
        run_id = event.get("run_id") or self._stored_run_id(context)
        self._run_id = run_id
        if event["status"] == "error":
            raise KfpRunError(event.get("message") or f"Waiting for KFP run {run_id} failed.")
        hook = self._get_hook()
        run = hook.get_run(run_id)
        if event["status"] == "timeout":
            self._record_terminated(run_id, f"timeout={self.timeout} passed")
        if pipeline_name is None and self._store is not None:
            saved = self._store.get(PIPELINE_NAMES_KEY) or {}
            pipeline_name, pipeline_version = saved.get("pipeline_name"), saved.get("pipeline_version")
        return self._finish(
            hook, self._status(hook, run), context, pipeline_name=pipeline_name, pipeline_version=pipeline_version
        )

    def on_kill(self) -> None:
        """The task was killed while waiting synchronously: terminate the KFP run too.

        Airflow sends SIGKILL a few seconds after SIGTERM, so terminate comes first, before any look.
        """
        if not self._run_id:
            return
        self._terminate(self._run_id, "the task was killed")

    def _terminate(self, run_id: str, reason: str) -> dict[str, Any] | None:
        """Terminate and wait (the hook's lifecycle step); recorded so the run is never blamed on a step."""
        from kfp_bridge.hooks.kfp import KfpApiError

        self.log.info("Terminating KFP run %s: %s (terminated by Airflow)", run_id, reason)
        hook = self._get_hook()
        try:
            hook.terminate_run(run_id)  # first: SIGKILL follows SIGTERM within seconds
        except KfpApiError as err:
            if err.status != 400:  # 400: already finished, or already being terminated
                self.log.warning("Could not terminate KFP run %s: %s", run_id, err)
        self._record_terminated(run_id, reason)
        try:
            run = hook.terminate_and_wait(run_id)
        except Exception:
            self.log.exception("Could not terminate KFP run %s", run_id)
            return None
        self.log.info(
            "KFP run %s is %s: terminated by Airflow (%s); no step failed", run_id, run.get("state"), reason
        )
        return run

    def _record_terminated(self, run_id: str, reason: str) -> None:
        if self._store is None:
            return
        try:
            self._store.set(TERMINATED_KEY, {"run_id": run_id, "reason": reason})
        except Exception:  # best effort: the log line above already says it
            self.log.warning("Could not record that KFP run %s was terminated by Airflow", run_id, exc_info=True)

    def _forget_terminated(self, run_id: str) -> None:
        if self._store is None or self._terminated_reason(run_id) is None:
            return
        try:
            self._store.delete(TERMINATED_KEY)
        except Exception:
            self.log.warning("Could not clear the terminated-by-Airflow record of KFP run %s", run_id, exc_info=True)

    def _terminated_reason(self, run_id: str) -> str | None:
        if self._store is None:
            return None
        try:
            record = self._store.get(TERMINATED_KEY)
        except Exception:
            return None
        if isinstance(record, dict) and record.get("run_id") == run_id:
            return str(record.get("reason") or "terminated")
        return None

    def _status(self, hook: KfpHook, run: dict[str, Any]) -> RunStatus:
        from kfp_bridge.utils.states import RunStatus

        spec = self._spec or hook.pipeline_spec_of(run)
        return RunStatus.from_api(run, spec, terminated_by_airflow=self._terminated_reason(run.get("run_id") or ""))

    # ----- preparation (no side effects) ------------------------------------------------------------
    def _prepare(self, context: Context) -> dict[str, Any]:
        from kfp_bridge.utils import pipelines

        self._check_arguments()
        dag_folder = os.path.dirname(context["dag"].fileloc) if getattr(context["dag"], "fileloc", None) else None
        _refuse_yaml_aliases(self.pipeline, dag_folder)
        spec = pipelines.load_pipeline(self.pipeline, dag_folder=dag_folder)
        if self.enable_caching is not None:
            spec = pipelines.with_caching(spec, self.enable_caching)
        declared = pipelines.declared_inputs(spec)
        name = spec.get("pipelineInfo", {}).get("name") or "pipeline"
        values, origins = _run_values(
            context, declared, self.pipeline_params, from_dag=self.params_from_dag, pipeline=name
        )
        params = pipelines.validate_params(spec, values, origins=origins)
        return {
            "spec": spec,
            "params": params,
            "pipeline_name": name,
            "version_name": pipelines.version_name(spec),
        }

    def _check_arguments(self) -> None:
        """Every argument, after rendering: a bad one fails here, before anything reaches KFP."""
        owner = "KfpRunOperator"
        if not isinstance(self.pipeline, str) or not self.pipeline.strip():
            raise _bad(owner, "pipeline", "a compiled YAML path or 'module:function'", self.pipeline)
        if self.on_rerun not in ON_RERUN_CHOICES:
            raise _bad(owner, "on_rerun", f"one of {', '.join(map(repr, ON_RERUN_CHOICES))}", self.on_rerun)
        check_positive_seconds(owner, "poll_interval", self.poll_interval, optional=False)
        check_positive_seconds(owner, "timeout", self.timeout, optional=True)
        check_boolean(owner, "enable_caching", self.enable_caching, optional=True)
        check_boolean(owner, "deferrable", self.deferrable)
        check_name(owner, "experiment", self.experiment, limit=EXPERIMENT_NAME_MAX, optional=False)
        check_name(owner, "run_name", self.run_name, limit=RUN_NAME_MAX, optional=True)
        check_namespace(owner, self.namespace)
        check_service_account(owner, self.service_account)
        check_conn_id(owner, "kfp_conn_id", self.kfp_conn_id)
        check_conn_id(owner, "kubernetes_conn_id", self.kubernetes_conn_id, optional=True)
        if not isinstance(self.pipeline_params, dict):
            raise _bad(owner, "params", "a dict of pipeline parameter values", self.pipeline_params)
        check_boolean(owner, "params_from_dag", self.params_from_dag)
        if self.model_uri is not None and (
            not isinstance(self.model_uri, str) or not self.model_uri.strip() or _pattern("control").search(self.model_uri)
        ):
            raise _bad(
                owner, "model_uri", "a non-empty URI or path without control characters", self.model_uri,
                "Check the template, or leave model_uri out.",
            )
        if self.model_uri is None and any(True for _ in _outlet_assets(self.outlets)):
            self.log.info("model_uri is not set: the asset events carry the KFP run but no model location")

    def _identity(self, context: Context) -> TaskIdentity:
        from kfp_bridge.utils.run_tags import task_identity

        return task_identity(context["dag"].dag_id, self.task_id, context["run_id"], _map_index(context))

    def _get_hook(self) -> KfpHook:
        if self._hook is None:
            from kfp_bridge.hooks.kfp import KfpHook

            self._hook = KfpHook(kfp_conn_id=self.kfp_conn_id, namespace=self.namespace)
            self._hook.settings  # noqa: B018 - fail now on a missing or malformed connection
        return self._hook

    # ----- resuming the previous run ------------------------------------------------------------------
    def _resume(
        self, hook: KfpHook, run: dict[str, Any], context: Context, prepared: dict[str, Any], identity: TaskIdentity
    ) -> dict[str, Any]:
        status = self._status(hook, run)
        if not status.is_terminal:
            self.log.info("Reattaching to KFP run %s (%s); no new run", status.run_id, status.state.value)
            return run
        if status.is_success:
            self.log.info("KFP run %s already %s; returning its result", status.run_id, status.state.value)
            return run
        if self.on_rerun == "new_run":
            self.log.info("Previous KFP run %s ended %s; on_rerun='new_run' submits a new run", status.run_id, status.state.value)
            return self._submit(hook, context, prepared, identity)
        self.log.info(
            "Previous KFP run %s ended %s (%s); asking KFP to retry only the failed steps",
            status.run_id,
            status.state.value,
            _why_it_failed(status),
        )
        from kfp_bridge.hooks.kfp import KfpRetryError

        try:
            return hook.retry_and_confirm(status.run_id)
        except KfpRetryError as err:
            raise KfpRunError(str(err)) from None

    # ----- submitting ------------------------------------------------------------------------------
    def _submit(self, hook: KfpHook, context: Context, prepared: dict[str, Any], identity: TaskIdentity) -> dict[str, Any]:
        experiment_id = hook.ensure_experiment(self.experiment)
        pipeline_id, version_id, uploaded = hook.ensure_pipeline_version(
            prepared["spec"], pipeline_name=prepared["pipeline_name"], version_name=prepared["version_name"]
        )
        self.log.info(
            "Pipeline %s version %s (%s)",
            prepared["pipeline_name"],
            prepared["version_name"],
            "uploaded" if uploaded else "unchanged, not uploaded again",
        )
        body: dict[str, Any] = {
            "experiment_id": experiment_id,
            "display_name": self.run_name or self._default_run_name(context, prepared["pipeline_name"]),
            "description": identity.tag,
            "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id},
            "runtime_config": {"parameters": prepared["params"]},
        }
        if self.service_account:
            body["service_account"] = self.service_account
        run = hook.create_run(body, tag=identity.tag)
        self.log.info("Created KFP run %s (%s)", run["run_id"], body["display_name"])
        return run

    def _default_run_name(self, context: Context, pipeline_name: str) -> str:
        logical = context.get("logical_date")
        when = logical.isoformat() if logical else context["run_id"]
        index = _map_index(context)
        suffix = f"[{index}]" if index is not None and index >= 0 else ""
        return f"{pipeline_name} {context['dag'].dag_id}.{self.task_id}{suffix} {when}"

    # ----- waiting ---------------------------------------------------------------------------------
    def _deadline(self) -> float | None:
        if self.timeout is None:
            return None
        seconds = self.timeout.total_seconds() if isinstance(self.timeout, timedelta) else float(self.timeout)
        return self.clock() + seconds

    def _defer(self, run_id: str, names: dict[str, str]) -> None:
        # The pipeline's name and version for the asset events, known only here. Kept in the task's
        # state store when there is one: dag.test()'s in-line trigger resumes with the event alone and
        # drops defer kwargs (airflow.sdk.definitions.dag, next_kwargs = {"event": ...}).
        if self._store is not None:
            self._store.set(PIPELINE_NAMES_KEY, names)
        self.defer(
            trigger=self._trigger(run_id),
            method_name="execute_complete",
            kwargs=None if self._store is not None else names,
        )

    def _trigger(self, run_id: str) -> BaseTrigger:
        """What follows the run while the task is deferred (benchmarks/triggerer_airflow.py swaps it)."""
        from kfp_bridge.triggers.kfp import KfpRunTrigger

        return KfpRunTrigger(
            run_id=run_id,
            kfp_conn_id=self.kfp_conn_id,
            poll_interval=self.poll_interval,
            deadline=self._deadline(),
            deferred_at=self.clock(),
        )

    def _wait(self, hook: KfpHook, run_id: str) -> RunStatus:
        from kfp_bridge.hooks.kfp import KfpApiError
        from kfp_bridge.utils.retry import TRANSIENT_HTTP_STATUSES

        deadline = self._deadline()
        last_progress = None
        while True:
            try:
                run = hook.get_run(run_id)
            except KfpApiError as err:
                if err.status not in TRANSIENT_HTTP_STATUSES and err.status != 0:
                    raise
                self.log.warning("KFP API unavailable (%s); still waiting for run %s", err, run_id)
                self.sleep(self.poll_interval)
                continue
            status = self._status(hook, run)
            if status.progress_key() != last_progress:
                last_progress = status.progress_key()
                self.log.info(status.progress_line())
            if status.is_terminal:
                return status
            if deadline is not None and self.clock() >= deadline:
                final = self._terminate(run_id, f"timeout={self.timeout} passed") or run
                raise KfpRunError(self._failure_message(hook, self._status(hook, final)))
            self.sleep(self.poll_interval)

    # ----- result ------------------------------------------------------------------------------
    def _finish(
        self,
        hook: KfpHook,
        status: RunStatus,
        context: Context,
        *,
        pipeline_name: str | None = None,
        pipeline_version: str | None = None,
    ) -> dict[str, Any]:
        # Kept for the OpenLineage facets (kfp_bridge.lineage), which a resumed process cannot read
        # from a spec it never loaded; they come through the defer arguments.
        self._pipeline_names = (pipeline_name, pipeline_version)
        if not status.is_success:
            raise KfpRunError(self._failure_message(hook, status))
        cached = [step.name for step in status.steps if step.cached]
        if cached:
            self.log.info("KFP served %d step(s) from its cache (not run again): %s", len(cached), ", ".join(cached))
        result = {
            "run_id": status.run_id,
            "state": status.state.value,
            "url": hook.settings.run_url(status.run_id),
            "experiment_id": status.experiment_id,
            "pipeline_version_id": status.pipeline_version_id,
            "steps": status.step_states(),
            "model_uri": self.model_uri,
        }
        extra = {
            "kfp_run_id": result["run_id"],
            "kfp_run_url": result["url"],
            "pipeline_name": pipeline_name,
            "pipeline_version": pipeline_version,
            "pipeline_version_id": result["pipeline_version_id"],
            "model_uri": self.model_uri,
        }
        for asset in _outlet_assets(self.outlets):
            context["outlet_events"][asset].extra.update(extra)
            self.log.info("Asset %s: event with model %s from KFP run %s", asset.uri, self.model_uri, status.run_id)
        return result

    def _failure_message(self, hook: KfpHook, status: RunStatus) -> str:
        """The failed steps by pipeline path with the run link, and each one's log tail (or where it is)."""
        tails: dict[str, str] = {}
        if status.failed_steps and self.kubernetes_conn_id:
            tails = hook.step_log_tails(
                status.run_id, status.failed_steps, kubernetes_conn_id=self.kubernetes_conn_id, spec=self._spec
            )
        hint = hook.log_location_hint(status.run_id)
        return status.failure_message(run_url=hook.settings.run_url(status.run_id), log_tails=tails, log_hint=hint)

    def _stored_run_id(self, context: Context) -> str | None:
        store = context.get("task_state_store")
        return store.get(RUN_ID_KEY) if store is not None else None


def _refuse_yaml_aliases(pipeline: str, dag_folder: str | None) -> None:
    """Refuse a compiled-pipeline YAML that uses aliases, before it is parsed into objects.

    The KFP compiler never writes anchors or aliases, and aliases expand exponentially when the spec
    is checked, hashed and uploaded (a 20-line "billion laughs" file takes minutes and gigabytes).
    The event stream is read without building anything, so this costs one pass over the file.
    """
    from kfp_bridge.utils.pipeline_sources import resolve_pipeline_source

    source = resolve_pipeline_source(pipeline, dag_folder)
    if source.kind != "yaml" or source.path is None:
        return
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(source.path, "rb") as stream:
            for event in yaml.parse(stream, Loader=loader):
                if isinstance(event, yaml.AliasEvent):
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise KfpArgumentError(
                        f"KfpRunOperator argument 'pipeline' must be a compiled KFP pipeline; {source.path} uses a "
                        f"YAML alias (*{event.anchor} at line {line}), which the KFP compiler never writes and which "
                        "can expand without bound. Recompile it with `kfp-bridge compile <pipeline source>.py`."
                    )
    except yaml.YAMLError:
        return  # the loader reports malformed YAML with its own message


def _why_it_failed(status: RunStatus) -> str:
    """The failed steps, or, when no step failed (e.g. KFP lost the run's pods), the run's own error."""
    if status.terminated == "airflow":
        return f"terminated by Airflow: {status.terminated_by_airflow}"
    if status.terminated == "elsewhere":
        return "terminated outside Airflow"
    if status.failed_steps:
        return "failed steps: " + ", ".join(step.name for step in status.failed_steps)
    return f"no step failed; run error: {status.error or 'none reported'}"


def _map_index(context: Context) -> int | None:
    ti = context.get("ti")
    index = getattr(ti, "map_index", None)
    return index if isinstance(index, int) else None


def _task_level_values(params: Any) -> dict[str, Any]:
    """The values given to this task, without the DAG-level params Airflow merged in.

    Reads ``Param.value`` directly: resolving would run a JSON-schema check per parameter at
    DAG parse time, which made parsing 20 operators 70% slower.
    """
    if not params:
        return {}
    if not hasattr(params, "get_param"):
        return dict(params)
    values = {}
    for key in params:
        param = params.get_param(key)
        if getattr(param, "source", "task") != "dag":
            values[key] = param.value
    return values


def _outlet_assets(outlets: Any) -> list[Any]:
    """The task's outlets that are Assets (an AssetAlias gets no event from this task)."""
    from airflow.sdk import Asset

    return [outlet for outlet in outlets or () if isinstance(outlet, Asset)]


def _run_values(
    context: Context,
    declared: dict[str, Any],
    task_values: dict[str, Any],
    *,
    from_dag: bool,
    pipeline: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The pipeline's parameter values for this run, and where each came from (for error messages).

    Conf given when triggering (UI form or API) overrides a parameter of this task, as it does
    Airflow params ([core] dag_run_conf_overrides_params). With ``from_dag``, the DAG's params that
    are pipeline inputs come from ``context["params"]``, which Airflow already resolved (defaults,
    then conf) and validated against the Params' JSON schema.
    """
    run_conf = getattr(context.get("dag_run"), "conf", None) or {}
    conf_wins = conf.getboolean("core", "dag_run_conf_overrides_params", fallback=True)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if from_dag:
        dag_params = getattr(context["dag"], "params", None) or {}
        wanted = [key for key in dag_params if key in declared]
        both = sorted(key for key in wanted if key in task_values)
        if both:
            raise KfpArgumentError(
                f"KfpRunOperator with params_from_dag=True: {', '.join(map(repr, both))} is both a DAG param and "
                f"in the task's params; give each pipeline input in one place (drop it from params=, or from the "
                f"DAG's params with pipeline_params(..., exclude=[...]))"
            )
        if not wanted:
            shown = ", ".join(sorted(dag_params)) or "none"
            raise KfpArgumentError(
                f"KfpRunOperator with params_from_dag=True, but none of the DAG's params ({shown}) is an input of "
                f"pipeline {pipeline!r} (inputs: {', '.join(sorted(declared)) or 'none'}); build the DAG's params "
                "with kfp_bridge.params.pipeline_params(<the pipeline YAML>), or drop params_from_dag"
            )
        resolved = context.get("params") or {}
        for key in wanted:
            if key in resolved:
                values[key] = resolved[key]
                given = conf_wins and key in run_conf
                origins[key] = f"dag_run.conf[{key!r}]" if given else f"the DAG param {key!r}"
    for key, value in task_values.items():
        values[key] = value
        origins[key] = f"params[{key!r}]"
        if conf_wins and key in run_conf and key in declared:
            values[key] = run_conf[key]
            origins[key] = f"dag_run.conf[{key!r}]"
    return values, origins
