"""Finish a canary that ``KServeRolloutOperator(promote=False)`` left, after a gate (an approval).

``KServePromoteOperator`` gives the recorded canary 100%; ``KServeRollbackOperator`` restores the
previous model. Both read the recorded rollout (the rollout task's XCom, :mod:`kfp_bridge.utils.release`),
read the InferenceService, and refuse before any patch when it changed since the canary was
recorded. What they do then runs on the rollout's own state machine
(:class:`~kfp_bridge.operators.kserve.KServeRolloutMachine`): the state goes to ``task_state_store``
before every patch, so a retry after a killed worker resumes and never leaves traffic split; a
second run finds the work done and succeeds without a patch.

``CanaryApprovalOperator`` is the standard provider's ``ApprovalOperator`` whose body shows the
canary (smoke result, traffic, model URI, the KFP run link), read from XCom when it runs; a timeout
answers ``Reject`` unless told otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.configuration import conf
from airflow.providers.standard.operators.hitl import ApprovalOperator

from kfp_bridge.lineage.mixins import KServeRolloutLineage
from kfp_bridge.links import INFERENCE_SERVICE_LINK, LazyLinks, persist_url
from kfp_bridge.operators.kserve import DEFAULT_TIMEOUT_S, KServeRolloutError, KServeRolloutMachine
from kfp_bridge.utils import kserve_status as ks
from kfp_bridge.utils import release
from kfp_bridge.utils import rollout as ro

if TYPE_CHECKING:
    from airflow.sdk import Context

    from kfp_bridge.hooks.kserve import KServeHook

RELEASE_STATE_KEY = "kserve_release"


class KServeReleaseRefused(KServeRolloutError):
    """The InferenceService is not as the canary was recorded; nothing was changed."""


class _KServeReleaseOperator(KServeRolloutLineage, KServeRolloutMachine):
    """Shared by promote and rollback: read the record, decide, run the machine from there.

    :param rollout_task_id: the ``KServeRolloutOperator(promote=False)`` task upstream; its XCom
        return value is the recorded rollout.
    :param rollout: the recorded rollout itself (templated: a dict, or its JSON), instead of
        ``rollout_task_id``.
    :param kubernetes_conn_id: cncf.kubernetes connection (default ``kubernetes_default``).
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param timeout: seconds (or timedelta) for the waits.
    """

    template_fields: Sequence[str] = ("rollout", "rollout_task_id")
    operator_extra_links = LazyLinks(INFERENCE_SERVICE_LINK)
    ui_color = "#cfe8fc"
    state_key: ClassVar[str] = RELEASE_STATE_KEY
    action: ClassVar[str] = ""

    def __init__(
        self,
        *,
        rollout_task_id: str | None = None,
        rollout: dict[str, Any] | str | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        timeout: float | timedelta | None = DEFAULT_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(kubernetes_conn_id=kubernetes_conn_id, deferrable=deferrable, timeout=timeout, **kwargs)
        self.rollout_task_id = rollout_task_id
        self.rollout = rollout
        self._record: release.CanaryRecord | None = None

    # ----- entry point -------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        self._context = context
        self._store = context.get("task_state_store")
        self._validate_arguments()
        self._precheck()
        record = self._read_record(context)  # still no cluster call
        self._record = record
        hook = self._get_hook()
        self._ingress = self._ingress_address(hook)

        saved = self._saved(record.inference_service)
        if saved is not None and not saved.phase.terminal and saved.target_uri == record.target_uri:
            obj = hook.get_isvc(record.inference_service, record.namespace)
            if not (saved.phase is ro.Phase.PROMOTE and ro.undone_while_away(saved, obj)):
                self.log.warning(
                    "Resuming the %s of %s left by an earlier attempt (phase %s)",
                    self.action,
                    saved.name,
                    saved.phase.value,
                )
                self._rollout = saved
                return self._run(hook, None)

        obj = hook.get_isvc(record.inference_service, record.namespace)
        st = ks.IsvcStatus.from_object(obj)
        if st.url:
            persist_url(context, INFERENCE_SERVICE_LINK, st.url)
        view = release.release_view(record, obj)
        self.log.info("%s %s: %s", self.action.capitalize(), record.target_uri, view.detail)
        step = self._decide(record, view)
        if isinstance(step, release.Refuse):
            raise KServeReleaseRefused(step.reason)
        if isinstance(step, release.AlreadyDone):
            self.log.info("Nothing to do: %s", step.note)
            return self._result(st, step.outcome, obj)
        self._rollout = release.rollout_from_record(record, obj, self.clock() + self._timeout_seconds())
        self._prepare(self._rollout)
        return self._run(hook, self._begin(hook, step))

    def _decide(self, record: release.CanaryRecord, view: release.ReleaseView) -> release.ReleaseStep:
        raise NotImplementedError

    def _prepare(self, rollout: ro.Rollout) -> None:
        """Mark the rollout for this action before its first patch (saved with it)."""

    def _precheck(self) -> None:
        """Before the record is read: a reason to skip."""

    def _task_state(self, task_id: str) -> str | None:
        """The state of ``task_id`` in this DAG run (Airflow's task-state call; raises when unavailable)."""
        ti = self._context["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, task_ids=[task_id], run_ids=[ti.run_id])
        return (states.get(ti.run_id) or {}).get(task_id)

    def _check_upstream(self, argument: str, task_id: Any) -> None:
        if not isinstance(task_id, str) or not task_id:
            raise ValueError(f"{argument} must be a task id, got {task_id!r}")
        if self.has_dag() and task_id not in self.get_flat_relative_ids(upstream=True):
            raise ValueError(
                f"{argument} {task_id!r} is not upstream of {self.task_id!r}; put it upstream "
                f"({task_id} >> ... >> {self.task_id}) or fix {argument}"
            )

    # ----- validation and the record (no side effects) -----------------------------------------
    def _validate_arguments(self) -> None:
        has_task, has_rollout = self.rollout_task_id is not None, self.rollout is not None
        if has_task == has_rollout:
            raise ValueError(
                f"{type(self).__name__} needs exactly one of rollout_task_id (the KServeRolloutOperator("
                "promote=False) task) or rollout (its recorded return value), got "
                + ("both" if has_task else "neither")
            )
        if has_task:
            self._check_upstream("rollout_task_id", self.rollout_task_id)
        self._validate_common_arguments()

    def _read_record(self, context: Context) -> release.CanaryRecord:
        if self.rollout_task_id is not None:
            value = context["ti"].xcom_pull(task_ids=self.rollout_task_id)
            source = f"the XCom return value of task {self.rollout_task_id!r}"
            if value is None:
                self._no_record()
                raise ValueError(
                    f"task {self.rollout_task_id!r} left no XCom return value: it must be a "
                    "KServeRolloutOperator(promote=False) that succeeded in this DAG run"
                )
        else:
            value, source = self.rollout, "rollout"
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    raise ValueError(
                        f"rollout is a string that is not JSON ({value[:80]!r}); pass the dict (DAG "
                        "render_template_as_native_obj=True) or use rollout_task_id"
                    ) from None
        return release.CanaryRecord.from_json(value, source)

    def _no_record(self) -> None:
        """The rollout task left nothing: the rollback skips when that task did not succeed."""

    # ----- results -------------------------------------------------------------------------------
    def _result(self, st: ks.IsvcStatus, outcome: str, obj: dict[str, Any] | None = None) -> dict[str, Any]:
        # After a deferral only the rollout (carried by the trigger) is there, not the record.
        src: ro.Rollout | release.CanaryRecord | None = self._rollout or self._record
        predictor = ((obj or {}).get("spec") or {}).get("predictor") or {}
        result = {
            "action": self.action,
            "outcome": outcome,
            "inference_service": st.name,
            "namespace": st.namespace,
            "mode": st.mode,
            "storage_uri": ks.storage_uri(predictor) if predictor else "",
            "previous_uri": src.previous_uri if src else "",
            "target_uri": src.target_uri if src else "",
            "previous_revision": src.previous_revision if src else "",
            "new_revision": src.new_revision if src else "",
            "traffic": [{"revision": t.revision, "percent": t.percent, "tag": t.tag} for t in st.traffic],
            "url": st.url,
        }
        self.log.info("%s %s: %s", self.action.capitalize(), outcome, result)
        return result


class KServePromoteOperator(_KServeReleaseOperator):
    """Promote the canary ``KServeRolloutOperator(promote=False)`` left: the new revision gets 100%.

    Already promoted: success without a patch. The canary gone (rolled back) or the service changed
    since it was recorded (another storage URI, another revision, another canary percent, another
    predictor spec): refused before any patch. A failed promotion rolls back, as the rollout does.
    A kill during the promotion leaves it to the retry (it was approved); see the base class for
    the arguments.
    """

    action: ClassVar[str] = "promote"

    def _decide(self, record: release.CanaryRecord, view: release.ReleaseView) -> release.ReleaseStep:
        return release.promote_step(record, view)

    def _prepare(self, rollout: ro.Rollout) -> None:
        rollout.approved = True


class KServeRollbackOperator(_KServeReleaseOperator):
    """Roll the canary ``KServeRolloutOperator(promote=False)`` left back: the previous model serves
    100% again, ``canaryTrafficPercent`` as it was before (Knative pins the previous revision first).

    Already rolled back: success without a patch. Promoted meanwhile, or changed since recorded:
    refused before any patch. When the rollout task did not succeed (it rolls itself back on
    failure) and left no record, the task is skipped.

    :param reason: why, for the log (default: the canary was not approved).
    :param skip_if_succeeded: a task upstream (the promotion) whose success in this DAG run means
        there is nothing to roll back: the task is skipped. With ``trigger_rule="all_done"`` the
        rollback then runs whenever the promotion did not happen or did not succeed (Reject, a HITL
        timeout, a failed or refused approval).
    """

    action: ClassVar[str] = "rollback"
    template_fields: Sequence[str] = (*_KServeReleaseOperator.template_fields, "reason")

    def __init__(
        self,
        *,
        reason: str = "the canary was not approved for promotion",
        skip_if_succeeded: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reason = reason
        self.skip_if_succeeded = skip_if_succeeded

    def _validate_arguments(self) -> None:
        if not isinstance(self.reason, str):
            raise ValueError(f"reason must be a string, got {self.reason!r} ({type(self.reason).__name__})")
        if self.skip_if_succeeded is not None:
            self._check_upstream("skip_if_succeeded", self.skip_if_succeeded)
        super()._validate_arguments()

    def _precheck(self) -> None:
        if self.skip_if_succeeded is None:
            return
        from airflow.sdk.exceptions import AirflowSkipException

        state = self._task_state(self.skip_if_succeeded)
        if state == "success":
            raise AirflowSkipException(f"task {self.skip_if_succeeded!r} succeeded: nothing to roll back")
        self.log.info("Task %r is %s: rolling the canary back", self.skip_if_succeeded, state)

    def _decide(self, record: release.CanaryRecord, view: release.ReleaseView) -> release.ReleaseStep:
        return release.rollback_step(record, view)

    def _prepare(self, rollout: ro.Rollout) -> None:
        rollout.reason = self.reason or "rolled back"

    def _no_record(self) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        assert self.rollout_task_id is not None
        try:
            state = self._task_state(self.rollout_task_id)
        except Exception as exc:  # no way to ask: the caller's error stands
            self.log.warning("Could not read the state of task %r: %s", self.rollout_task_id, exc)
            return
        if state != "success":
            raise AirflowSkipException(
                f"task {self.rollout_task_id!r} ended {state!r} and recorded no canary (a failed rollout rolls "
                "itself back): nothing to roll back"
            )

    def _on_rolled_back(self, hook: KServeHook, note: str) -> dict[str, Any]:
        """Rolled back is this operator's success, when verified."""
        if note:
            raise self._rolled_back(hook, note)
        r = self._rollout
        assert r is not None
        obj = hook.get_isvc(r.name, r.namespace)
        r.phase = ro.Phase.ROLLED_BACK
        self._save()
        self.log.info("Rolled %s back to %s (%s)", r.name, r.previous_uri, r.reason)
        return self._result(ks.IsvcStatus.from_object(obj), "rolled_back", obj)


# ----- the gate ------------------------------------------------------------------------------------
class CanaryApprovalOperator(ApprovalOperator):
    """``ApprovalOperator`` whose body shows the recorded canary when it runs: model URI (new and
    previous), traffic split, smoke result, and the KFP run link.

    Wire it ``canary >> approval >> promote >> rollback`` with
    ``KServeRollbackOperator(skip_if_succeeded="promote", trigger_rule="all_done")``: Approve runs
    the promotion (and the rollback skips); Reject (or the timeout, whose default answer is Reject)
    skips the promotion and the rollback runs.

    :param rollout_task_id: the ``KServeRolloutOperator(promote=False)`` task.
    :param kfp_task_id: the ``KfpRunOperator`` task that trained the model (its run link is shown).
    :param body: Markdown shown above the canary summary (templated).
    Other arguments as ``ApprovalOperator`` (``subject``, ``response_timeout``, ``assigned_users``...).
    """

    def __init__(
        self,
        *,
        rollout_task_id: str,
        kfp_task_id: str | None = None,
        defaults: str | list[str] | None = ApprovalOperator.REJECT,
        **kwargs: Any,
    ) -> None:
        super().__init__(defaults=defaults, **kwargs)
        if isinstance(self.response_timeout, timedelta) and type(self.response_timeout) is not timedelta:
            # A pendulum Duration (what DAG files usually write) cannot be sent with the task's
            # "awaiting input" message on Airflow 3.3: the task failed as it parked.
            self.response_timeout = timedelta(seconds=self.response_timeout.total_seconds())
        self.rollout_task_id = rollout_task_id
        self.kfp_task_id = kfp_task_id

    def execute(self, context: Context) -> Any:
        ti = context["ti"]
        value = ti.xcom_pull(task_ids=self.rollout_task_id)
        record = release.CanaryRecord.from_json(value, f"the XCom return value of task {self.rollout_task_id!r}")
        kfp_run = ti.xcom_pull(task_ids=self.kfp_task_id) if self.kfp_task_id else None
        summary = release.approval_body(record, kfp_run if isinstance(kfp_run, dict) else None)
        self.body = f"{self.body}\n\n{summary}" if self.body else summary
        return super().execute(context)
