"""The API's behaviour, independent of HTTP: experiments, pipelines, versions and runs.

Every method is synchronous and takes plain values; :mod:`kfp_bridge.local.kfp.server` calls them
from worker threads and turns :class:`~kfp_bridge.local.kfp.wire.ApiError` into error responses.

Single-user (default): ``namespace`` is accepted and replaced by "" (``ResourceManager.
ReplaceNamespace``), as the real server does. Multi-user (``policy`` given, fidelity K8/K9):
experiments, runs and pipelines belong to namespaces, and every call checks access as the
upstream servers do (apiserver/server/run_server.go ``canAccessRun``, experiment_server.go
``canAccessExperiment``, pipeline_server.go ``canAccessPipeline``): a list of runs or experiments
without a namespace (and, for runs, without ``experiment_id``) and an experiment without a namespace
are 400s, before any authentication; the caller comes from :data:`~kfp_bridge.local.kfp.auth.CALLER`.
Calls addressed by id are checked by :meth:`KfpService.check_access` before the method runs.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from kfp_bridge.local.kfp import progress, query, specs, wire
from kfp_bridge.local.kfp.auth import SYSTEM_NAMESPACE, Access, MultiUser
from kfp_bridge.local.kfp.executor import Executor
from kfp_bridge.local.kfp.store import Store
from kfp_bridge.local.kfp.wire import (
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    ApiError,
    bad_request,
    bad_request_error,
    internal_server_error,
    invalid_input_error,
    not_found,
    resource_not_found_error,
)

DEFAULT_EXPERIMENT = "Default"
EXPERIMENT_NAME_MAX = 128  # characters: the experiments table's Name varchar(128)
DEFAULT_SERVICE_ACCOUNT = "pipeline-runner"
TERMINABLE = ("PENDING", "RUNNING", "PAUSED", "RUNTIME_STATE_UNSPECIFIED")
# A run whose workflow is Failed/Error (workflow.go GenerateRetryExecution). The stand-in has no
# workflow: FAILED is Argo's Failed/Error, and CANCELED (nothing in 2.17 stores it for a v2 run) can
# only be an older record of a terminated run, whose workflow Argo had failed too.
RETRYABLE = ("FAILED", "CANCELED")
# Node states GenerateRetryExecution refuses (its default case: Pending, Running).
_LIVE_NODE_PHASES = {"PENDING": "Pending", "RUNNING": "Running"}
# How long a retry waits for the stand-in's own bookkeeping to let go of a run that just ended:
# the real server stores FAILED only after the workflow stopped, so it never sees that window.
RETRY_SETTLE_SECONDS = 2.0


def _new_id() -> str:
    return str(uuid.uuid4())


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _parse_tags(raw: Any, where: str) -> dict[str, str]:
    if raw in (None, "", {}):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise bad_request(f"{where}: tags must be a JSON object of strings, e.g. '{{\"team\": \"ml\"}}'") from exc
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise bad_request(f"{where}: tags must be a map of string to string")
    return dict(raw)


class KfpService:
    """:param store: persistent documents. :param executor: runs pipelines.
    :param policy: multi-user identities and namespaces; None for single-user mode.
    """

    def __init__(self, store: Store, executor: Executor, policy: MultiUser | None = None) -> None:
        self.store = store
        self.executor = executor
        self.policy = policy

    @property
    def multi_user(self) -> bool:
        return self.policy is not None

    # ----- health -----

    def healthz(self) -> dict[str, Any]:
        # The real server also sends commit_sha/tag_name, but the SDK's model has no such fields.
        return {"multi_user": self.multi_user, "pipeline_store": "database"}

    # ----- multi-user access (no-ops in single-user mode) -----

    def _namespace(self, raw: Any) -> str:
        """``ReplaceNamespace``: the request's namespace in multi-user mode, "" otherwise."""
        return str(raw or "") if self.multi_user else ""

    def _authorize(self, access: Access) -> None:
        if self.policy is not None:
            self.policy.authorize(access)

    def _run_access(self, run_id: str, verb: str, namespace: str = "") -> None:
        """``canAccessRun``: namespace from the run (or its experiment), then IsAuthorized."""
        if self.policy is None:
            return
        if run_id:
            run = self.store.get("runs", run_id)
            if run is None:
                raise resource_not_found_error("Run", run_id).wrap(f"Failed to authorize with the run ID {run_id}")
            namespace = run.get("namespace") or ""
            if not namespace:
                experiment = self.store.get("experiments", run.get("experiment_id", ""))
                namespace = (experiment or {}).get("namespace") or ""
        if not namespace:
            raise invalid_input_error("A run cannot have an empty namespace in multi-user mode")
        try:
            self.policy.authorize(Access(namespace, verb, "runs"))
        except ApiError as err:
            raise err.wrap(f"Failed to access run {run_id}. Check if you have access to namespace {namespace}") from None

    def _experiment_access(self, experiment_id: str, verb: str, namespace: str = "", name: str = "") -> None:
        """``canAccessExperiment``."""
        if self.policy is None:
            return
        if experiment_id:
            experiment = self.store.get("experiments", experiment_id)
            if experiment is None:
                raise resource_not_found_error("Experiment", experiment_id).wrap("Failed to authorize with the experiment ID")
            namespace = experiment.get("namespace") or ""
            name = name or experiment["display_name"]
        if not namespace:
            raise invalid_input_error("An experiment cannot have an empty namespace in multi-user mode")
        try:
            self.policy.authorize(Access(namespace, verb, "experiments", name))
        except ApiError as err:
            raise err.wrap("Failed to authorize with API") from None

    def _pipeline_access(self, pipeline_id: str, verb: str, namespace: str = "", name: str = "") -> None:
        """``canAccessPipeline``: shared pipelines (no namespace) are readable by anyone; writing
        them is checked against the KFP system namespace."""
        if self.policy is None:
            return
        if pipeline_id:
            pipeline = self.store.get("pipelines", pipeline_id)
            if pipeline is None:
                raise resource_not_found_error("Pipeline", pipeline_id).wrap(
                    f"Failed to access pipeline {pipeline_id}. Check if it exists and have a namespace assigned")
            namespace = pipeline.get("namespace") or ""
            name = name or pipeline["name"]
        if not namespace:
            if verb in ("get", "list"):
                return
            try:
                self.policy.authorize(Access(SYSTEM_NAMESPACE, verb, "pipelines", name))
            except ApiError as err:
                raise err.wrap(f"Failed to access shared pipeline {pipeline_id}. Check if you have "
                               f"permission to {verb} shared pipelines") from None
            return
        try:
            self.policy.authorize(Access(namespace, verb, "pipelines", name))
        except ApiError as err:
            raise err.wrap(f"Failed to access pipeline {pipeline_id}. Check if you have access to namespace {namespace}") from None

    def _version_access(self, version_id: str, verb: str) -> None:
        """``canAccessPipelineVersion``."""
        if self.policy is None:
            return
        version = self.store.get("pipeline_versions", version_id)
        if version is None:
            raise resource_not_found_error("PipelineVersion", version_id).wrap(
                f"Failed to access pipeline version {version_id}. Check if it exists")
        self._pipeline_access(version["pipeline_id"], verb)

    def check_access(self, kind: str, ident: str, verb: str) -> None:
        """Access check of a call addressed by id (the server runs it before the call itself);
        raises the upstream chain up to, not including, the RPC's own wrappers."""
        if self.policy is None:
            return
        check = {"run": self._run_access, "experiment": self._experiment_access,
                 "pipeline": self._pipeline_access, "pipeline_version": self._version_access}[kind]
        check(ident, verb)

    # ----- experiments -----

    def ensure_default_experiment(self) -> None:
        """Single-user only, as the real server (main.go creates it unless multi-user)."""
        if self.multi_user:
            return
        with self.store.transaction():
            if not any(e["display_name"] == DEFAULT_EXPERIMENT and not e.get("namespace")
                       for e in self.store.all("experiments")):
                self._insert_experiment(DEFAULT_EXPERIMENT, "All runs created without specifying an experiment will be grouped here.")

    def _insert_experiment(self, name: str, description: str, namespace: str = "") -> dict[str, Any]:
        doc = {"experiment_id": _new_id(), "display_name": name, "description": description,
               "created_at": time.time(), "namespace": namespace, "storage_state": "AVAILABLE",
               "last_run_created_at": 0.0}
        return self.store.put("experiments", doc["experiment_id"], doc)

    def _experiment(self, experiment_id: str) -> dict[str, Any]:
        doc = self.store.get("experiments", experiment_id)
        if doc is None:
            raise not_found("Experiment", experiment_id)
        return doc

    def create_experiment(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be an Experiment object with 'display_name'")
        name = _text(body, "display_name").strip()
        if not name:
            raise bad_request("experiment 'display_name' is required; e.g. {\"display_name\": \"my-exp\"}")
        namespace = self._namespace(_text(body, "namespace"))
        try:
            self._experiment_access("", "create", namespace, name)
        except ApiError as err:
            raise err.wrap("Failed to authorize the request").wrap("Failed to create a experiment") from None
        with self.store.transaction():
            # Names are unique per namespace (the experiments table's Name+Namespace index).
            if any(e["display_name"] == name and (e.get("namespace") or "") == namespace
                   for e in self.store.all("experiments")):
                raise ApiError(ALREADY_EXISTS, f"an experiment named {name!r} already exists; pick another display_name or reuse it")
            if len(name) > EXPERIMENT_NAME_MAX:
                # No API-level check in 2.17: MySQL's strict mode refuses the insert (model/experiment.go
                # Name varchar(128)), and ExperimentStore.CreateExperiment reports an internal error.
                cause = "Error 1406 (22001): Data too long for column 'Name' at row 1"
                raise internal_server_error(cause, f"Failed to add experiment to experiment table: {cause}")
            doc = self._insert_experiment(name, _text(body, "description"), namespace)
        return wire.render_experiment(doc)

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        return wire.render_experiment(self._experiment(experiment_id))

    def list_experiments(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            namespace = self._namespace(params.get("namespace"))
            q = query.parse_list_query("experiments", filter_text=params.get("filter"), sort_by=params.get("sort_by"),
                                       page_size=params.get("page_size"), page_token=params.get("page_token"),
                                       scope=namespace)
        except ApiError as err:
            raise err.wrap("Failed to create list options") from None
        try:
            self._experiment_access("", "list", namespace)
        except ApiError as err:
            raise err.wrap("Failed to authorize with API").wrap("List experiments failed") from None
        docs = self.store.all("experiments")
        if self.multi_user:
            docs = [d for d in docs if (d.get("namespace") or "") == namespace]
        page, total, token = query.apply(q, docs)
        return wire.render_list("experiments", [wire.render_experiment(d) for d in page], total, token)

    def set_experiment_storage(self, experiment_id: str, state: str) -> dict[str, Any]:
        with self.store.transaction():
            self._experiment(experiment_id)
            self.store.update("experiments", experiment_id, lambda d: d.update(storage_state=state))
            if state == "ARCHIVED":
                # The real server archives an experiment's runs with it.
                for run in self.store.all("runs"):
                    if run.get("experiment_id") == experiment_id:
                        self.store.update("runs", run["run_id"], lambda d: d.update(storage_state="ARCHIVED"))
        return {}

    def delete_experiment(self, experiment_id: str) -> dict[str, Any]:
        self._experiment(experiment_id)
        self.store.delete("experiments", experiment_id)
        return {}

    # ----- pipelines -----

    def _pipeline(self, pipeline_id: str) -> dict[str, Any]:
        doc = self.store.get("pipelines", pipeline_id)
        if doc is None:
            raise not_found("Pipeline", pipeline_id)
        return doc

    def _versions_of(self, pipeline_id: str) -> list[dict[str, Any]]:
        return [v for v in self.store.all("pipeline_versions") if v["pipeline_id"] == pipeline_id]

    @staticmethod
    def _pipeline_name(body: dict[str, Any], where: str) -> str:
        name = _text(body, "name").strip() or _text(body, "display_name").strip()
        if not name:
            raise bad_request(f"{where}: a pipeline needs 'display_name' (or 'name')")
        return name

    def _insert_pipeline(self, body: dict[str, Any], where: str, namespace: str = "") -> dict[str, Any]:
        name = self._pipeline_name(body, where)
        display = _text(body, "display_name").strip() or name
        # Names are unique per namespace ("" = shared), as the pipelines table's Name+Namespace index.
        if any(p["name"] == name and (p.get("namespace") or "") == namespace for p in self.store.all("pipelines")):
            raise ApiError(ALREADY_EXISTS, f"a pipeline named {name!r} already exists; upload a new version to it instead")
        doc = {"pipeline_id": _new_id(), "name": name, "display_name": display,
               "description": _text(body, "description"), "created_at": time.time(), "namespace": namespace,
               "tags": _parse_tags(body.get("tags"), where)}
        return self.store.put("pipelines", doc["pipeline_id"], doc)

    def _insert_version(self, pipeline: dict[str, Any], body: dict[str, Any], spec: dict[str, Any], where: str) -> dict[str, Any]:
        name = _text(body, "name").strip() or _text(body, "display_name").strip() or pipeline["name"]
        display = _text(body, "display_name").strip() or name
        if any(v["name"] == name for v in self._versions_of(pipeline["pipeline_id"])):
            raise ApiError(
                ALREADY_EXISTS,
                f"pipeline {pipeline['name']!r} already has a version named {name!r}; pick another version name",
            )
        doc = {"pipeline_id": pipeline["pipeline_id"], "pipeline_version_id": _new_id(), "name": name,
               "display_name": display, "description": _text(body, "description"), "created_at": time.time(),
               "package_url": body.get("package_url") or {}, "code_source_url": _text(body, "code_source_url"),
               "tags": _parse_tags(body.get("tags"), where)}
        self.store.put("specs", doc["pipeline_version_id"], {"spec": spec})
        return self.store.put("pipeline_versions", doc["pipeline_version_id"], doc)

    def _spec_from_version_body(self, body: dict[str, Any], where: str) -> dict[str, Any]:
        if body.get("pipeline_spec"):
            spec = body["pipeline_spec"]
            specs.inner_spec(spec, f"{where} pipeline_spec") if isinstance(spec, dict) else specs.validate_spec(spec, where)
            return spec
        url = ((body.get("package_url") or {}).get("pipeline_url") or "").strip()
        if not url:
            raise bad_request(f"{where}: a pipeline version needs 'pipeline_spec' or 'package_url.pipeline_url'")
        if "://" not in url:
            url = Path(url).absolute().as_uri()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                data = response.read()
        except Exception as exc:
            raise bad_request(f"{where}: cannot fetch package_url {url!r} ({exc}); use a reachable URL or send pipeline_spec") from exc
        return specs.parse_package(data, url)

    def upload_pipeline(self, data: bytes, filename: str, params: dict[str, Any]) -> dict[str, Any]:
        spec = specs.parse_package(data, f"uploaded file {filename!r}")
        fallback = filename.rsplit("/", 1)[-1]
        for ext in (".tar.gz", ".tgz", ".zip", ".yaml", ".yml"):
            if fallback.endswith(ext):
                fallback = fallback[: -len(ext)]
                break
        body = {"name": params.get("name") or params.get("display_name") or fallback,
                "display_name": params.get("display_name") or "", "description": params.get("description") or "",
                "tags": params.get("tags")}
        namespace = self._namespace(params.get("namespace"))
        if namespace:
            # pipeline_upload_server.go canUploadVersionedPipeline: a shared upload is not checked at
            # all; a denied namespaced one answers 400 "Failed to create a pipeline".
            try:
                self._authorize(Access(namespace, "create", "pipelines"))
            except ApiError:
                raise bad_request("Failed to create a pipeline") from None
        with self.store.transaction():
            pipeline = self._insert_pipeline(body, "upload", namespace)
            self._insert_version(pipeline, {**body, "tags": None}, spec, "upload")
        return wire.render_pipeline(pipeline)

    def upload_version(self, data: bytes, filename: str, params: dict[str, Any]) -> dict[str, Any]:
        pipeline_id = params.get("pipelineid") or params.get("pipeline_id")
        if not pipeline_id:
            raise bad_request("upload_version needs the 'pipelineid' query parameter naming an existing pipeline")
        spec = specs.parse_package(data, f"uploaded file {filename!r}")
        body = {"name": params.get("name") or params.get("display_name") or filename,
                "display_name": params.get("display_name") or "", "description": params.get("description") or "",
                "tags": params.get("tags")}
        namespace = (self._pipeline(pipeline_id).get("namespace") or "") if self.multi_user else ""
        if namespace:
            try:
                self._authorize(Access(namespace, "create", "pipelines"))
            except ApiError:
                raise bad_request("Failed to create a pipeline version") from None
        with self.store.transaction():
            version = self._insert_version(self._pipeline(pipeline_id), body, spec, "upload_version")
        return wire.render_version(version, spec)

    def create_pipeline(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a Pipeline object")
        namespace = self._namespace(_text(body, "namespace"))
        name = self._pipeline_name(body, "create pipeline")
        try:
            self._pipeline_access("", "create", namespace, name)
        except ApiError as err:
            raise err.wrap(
                f"Failed to create a pipeline due to authorization error. Check if you have write permissions to namespace {namespace}"
            ).wrap("Failed to create a pipeline due to server error") from None
        with self.store.transaction():
            return wire.render_pipeline(self._insert_pipeline(body, "create pipeline", namespace))

    def create_pipeline_and_version(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("pipeline"), dict):
            raise bad_request("the request body must be {\"pipeline\": {...}, \"pipeline_version\": {...}}")
        version_body = body.get("pipeline_version")
        if not isinstance(version_body, dict):
            raise bad_request("'pipeline_version' is required and must carry pipeline_spec or package_url")
        namespace = self._namespace(_text(body["pipeline"], "namespace"))
        try:
            self._pipeline_access("", "create", namespace, self._pipeline_name(body["pipeline"], "create pipeline"))
        except ApiError as err:
            raise err.wrap("Failed to create a pipeline") from None
        spec = self._spec_from_version_body(version_body, "pipeline_version")
        with self.store.transaction():
            pipeline = self._insert_pipeline(body["pipeline"], "create pipeline", namespace)
            self._insert_version(pipeline, version_body, spec, "create pipeline")
        return wire.render_pipeline(pipeline)

    def create_version(self, pipeline_id: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a PipelineVersion object")
        self._pipeline(pipeline_id)
        spec = self._spec_from_version_body(body, "pipeline version")
        with self.store.transaction():
            version = self._insert_version(self._pipeline(pipeline_id), body, spec, "create pipeline version")
        return wire.render_version(version, spec)

    def get_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        return wire.render_pipeline(self._pipeline(pipeline_id))

    def get_pipeline_by_name(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        namespace = self._namespace((params or {}).get("namespace"))
        try:
            self._pipeline_access("", "get", namespace, name)
        except ApiError as err:
            raise err.wrap(
                f"Failed to fetch a pipeline due to authorization error. Check if you have read permission to namespace {namespace}"
            ).wrap(f"Failed to get a pipeline with name {name} and namespace {namespace}. Check error stack.") from None
        for doc in self.store.all("pipelines"):
            if doc["name"] == name and (not self.multi_user or (doc.get("namespace") or "") == namespace):
                return wire.render_pipeline(doc)
        raise not_found("Pipeline named", repr(name))

    @staticmethod
    def _list_options(resource: str, params: dict[str, Any], scope: str) -> query.ListQuery:
        """``validatedListOptions`` for pipelines and versions, with their wrappers."""
        filter_text = params.get("filter") or ""
        what = "pipelines" if resource == "pipelines" else "pipeline versions"
        if filter_text:
            # extractTagFiltersFromFilterSpec decodes the filter first, with its own message.
            try:
                query.query_unescape(filter_text)
            except query.EscapeError as exc:
                raise invalid_input_error(f"failed to decode filter spec: {exc}").wrap(
                    f"Failed to list {what} due to invalid tag filter in filter spec") from None
        try:
            return query.parse_list_query(resource, filter_text=filter_text, sort_by=params.get("sort_by"),
                                          page_size=params.get("page_size"), page_token=params.get("page_token"),
                                          scope=scope)
        except ApiError as err:
            raise err.wrap(
                f"Failed to list {what} due invalid list options: pageToken: {params.get('page_token') or ''}, "
                f"pageSize: {params.get('page_size') or 0}, sortBy: {params.get('sort_by') or ''}, filter: {filter_text}"
            ) from None

    def list_pipelines(self, params: dict[str, Any]) -> dict[str, Any]:
        namespace = self._namespace(params.get("namespace"))
        q = self._list_options("pipelines", params, namespace)
        try:
            self._pipeline_access("", "list", namespace)
        except ApiError as err:
            raise err.wrap(
                f"Failed to list pipelines due to authorization error. Check if you have read permission to namespace {namespace}"
            ).wrap(f"Failed to list pipelines in namespace {namespace}. Check error stack") from None
        docs = self.store.all("pipelines")
        if self.multi_user:
            docs = [d for d in docs if (d.get("namespace") or "") == namespace]
        page, total, token = query.apply(q, docs)
        return wire.render_list("pipelines", [wire.render_pipeline(d) for d in page], total, token)

    def delete_pipeline(self, pipeline_id: str, cascade: bool) -> dict[str, Any]:
        with self.store.transaction():
            pipeline = self._pipeline(pipeline_id)
            versions = self._versions_of(pipeline_id)
            if versions and not cascade:
                raise bad_request(
                    f"pipeline {pipeline['name']!r} has {len(versions)} existing pipeline version(s); "
                    "delete them first or set cascade=true"
                )
            for version in versions:
                self.store.delete("pipeline_versions", version["pipeline_version_id"])
                self.store.delete("specs", version["pipeline_version_id"])
            self.store.delete("pipelines", pipeline_id)
        return {}

    def _version(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        doc = self.store.get("pipeline_versions", version_id)
        if doc is None or doc["pipeline_id"] != pipeline_id:
            raise not_found("PipelineVersion", f"{version_id} of pipeline {pipeline_id}")
        return doc

    def get_version(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        doc = self._version(pipeline_id, version_id)
        return wire.render_version(doc, (self.store.get("specs", version_id) or {}).get("spec"))

    def list_versions(self, pipeline_id: str, params: dict[str, Any]) -> dict[str, Any]:
        q = self._list_options("pipeline_versions", params, pipeline_id)
        if self.multi_user:
            outer = f"Failed to list pipeline versions for pipeline {pipeline_id}"
            pipeline = self.store.get("pipelines", pipeline_id)
            if pipeline is None:
                raise resource_not_found_error("Pipeline", pipeline_id).wrap(
                    f"Failed to get namespace for pipeline id {pipeline_id}").wrap(
                    f"Failed to list pipeline versions due to error fetching the namespace for pipeline {pipeline_id}").wrap(outer)
            namespace = pipeline.get("namespace") or ""
            try:
                self._pipeline_access("", "list", namespace)
            except ApiError as err:
                raise err.wrap("Failed to list pipeline versions due to authorization error. Check if you have read "
                               f"permission to namespace {namespace}").wrap(outer) from None
        self._pipeline(pipeline_id)
        page, total, token = query.apply(q, self._versions_of(pipeline_id))
        items = [wire.render_version(d, (self.store.get("specs", d["pipeline_version_id"]) or {}).get("spec")) for d in page]
        return wire.render_list("pipeline_versions", items, total, token)

    def delete_version(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        with self.store.transaction():
            self._version(pipeline_id, version_id)
            self.store.delete("pipeline_versions", version_id)
            self.store.delete("specs", version_id)
        return {}

    # ----- runs -----

    def _run(self, run_id: str) -> dict[str, Any]:
        doc = self.store.get("runs", run_id)
        if doc is None:
            raise not_found("Run", run_id)
        return doc

    def _render_run(self, doc: dict[str, Any]) -> dict[str, Any]:
        spec = None if doc.get("pipeline_version_reference") else (self.store.get("specs", doc["run_id"]) or {}).get("spec")
        return wire.render_run(doc, spec)

    def _run_source(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(stored spec, pipeline_version_reference or None) from the run body's oneof."""
        inline = body.get("pipeline_spec")
        reference = body.get("pipeline_version_reference")
        legacy_version = body.get("pipeline_version_id")
        given = [n for n, v in (("pipeline_spec", inline), ("pipeline_version_reference", reference),
                                ("pipeline_version_id", legacy_version)) if v]
        if len(given) != 1:
            raise bad_request(
                "a run needs exactly one of 'pipeline_spec' or 'pipeline_version_reference' "
                f"({{pipeline_id, pipeline_version_id}}); got {given or 'none'}"
            )
        if inline:
            if not isinstance(inline, dict):
                raise bad_request("'pipeline_spec' must be the compiled PipelineSpec object")
            specs.inner_spec(inline)
            return inline, None
        if legacy_version:
            version = self.store.get("pipeline_versions", str(legacy_version))
            if version is None:
                raise not_found("PipelineVersion", str(legacy_version))
            reference = {"pipeline_id": version["pipeline_id"], "pipeline_version_id": version["pipeline_version_id"]}
        if not isinstance(reference, dict) or not reference.get("pipeline_version_id"):
            raise bad_request("'pipeline_version_reference' needs 'pipeline_version_id' (and 'pipeline_id')")
        version_id = str(reference["pipeline_version_id"])
        pipeline_id = str(reference.get("pipeline_id") or "")
        version = self.store.get("pipeline_versions", version_id)
        if version is None or (pipeline_id and version["pipeline_id"] != pipeline_id):
            raise not_found("PipelineVersion", f"{version_id} of pipeline {pipeline_id or '(any)'}")
        spec = (self.store.get("specs", version_id) or {}).get("spec") or {}
        return spec, {"pipeline_id": version["pipeline_id"], "pipeline_version_id": version_id}

    def create_run(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a Run object")
        display_name = _text(body, "display_name").strip()
        if not display_name:
            raise bad_request("run 'display_name' is required")
        namespace = self._create_run_namespace(_text(body, "experiment_id"))
        spec, reference = self._run_source(body)
        inner = specs.inner_spec(spec)
        runtime = body.get("runtime_config") or {}
        if not isinstance(runtime, dict):
            raise bad_request("'runtime_config' must be an object with 'parameters'")
        params = runtime.get("parameters") or {}
        if not isinstance(params, dict):
            raise bad_request("'runtime_config.parameters' must be a map of parameter name to value")
        specs.check_parameters(inner, params)
        now = time.time()
        with self.store.transaction():
            experiment_id = _text(body, "experiment_id")
            if experiment_id:
                experiment = self._experiment(experiment_id)
            else:
                self.ensure_default_experiment()
                experiment = next(e for e in self.store.all("experiments")
                                  if e["display_name"] == DEFAULT_EXPERIMENT and not e.get("namespace"))
            run_id = _new_id()
            runtime_config: dict[str, Any] = {"parameters": params}
            if runtime.get("pipeline_root"):
                runtime_config["pipeline_root"] = str(runtime["pipeline_root"])
            doc: dict[str, Any] = {
                "run_id": run_id, "experiment_id": experiment["experiment_id"], "display_name": display_name,
                "description": _text(body, "description"), "storage_state": "AVAILABLE", "namespace": namespace,
                "runtime_config": runtime_config,
                "service_account": _text(body, "service_account") or DEFAULT_SERVICE_ACCOUNT,
                "created_at": now, "scheduled_at": now, "finished_at": 0.0, "_attempt": 1,
            }
            if reference:
                doc["pipeline_version_reference"] = reference
            # CreateRun stores PENDING before anything reports on the run (resource_manager.go,
            # fidelity K7): the first state on the wire and in state_history is PENDING.
            progress.transition(doc, "PENDING", now)
            progress.add_root_tasks(doc, specs.root_task_names(inner), now)
            self.store.put("specs", run_id, {"spec": spec})
            self.store.put("runs", run_id, doc)
            self.store.update("experiments", experiment["experiment_id"], lambda d: d.update(last_run_created_at=now))
        self.executor.start(run_id, 1)
        return self._render_run(doc)

    def _create_run_namespace(self, experiment_id: str) -> str:
        """run_server.go createRun: the experiment/namespace pair, then create access (multi-user)."""
        if not self.multi_user:
            return ""
        outer = "Failed to create a new run"
        pair = "Failed to create a run due to invalid experimentId and namespace combination"
        if not experiment_id:
            raise invalid_input_error("Experiment id can not be empty in multi-user mode").wrap(pair).wrap(outer)
        experiment = self.store.get("experiments", experiment_id)
        if experiment is None:
            raise resource_not_found_error("Experiment", experiment_id).wrap(
                f"Failed to fetch namespace from experiment {experiment_id}").wrap(
                f"Failed to fetch namespace for experiment {experiment_id}").wrap(pair).wrap(outer)
        namespace = experiment.get("namespace") or ""
        if not namespace:
            raise invalid_input_error("A run cannot have an empty namespace in multi-user mode").wrap(outer)
        try:
            self._run_access("", "create", namespace)
        except ApiError as err:
            raise err.wrap("Failed to create a run due to authorization error. Check if you have write "
                           f"permissions to namespace {namespace}").wrap(outer) from None
        return namespace

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._render_run(self._run(run_id))

    def _run_namespace(self, doc: dict[str, Any]) -> str:
        if doc.get("namespace"):
            return doc["namespace"]
        return (self.store.get("experiments", doc.get("experiment_id", "")) or {}).get("namespace") or ""

    def list_runs(self, params: dict[str, Any]) -> dict[str, Any]:
        experiment_id = params.get("experiment_id") or ""
        namespace = self._namespace(params.get("namespace"))
        try:
            q = query.parse_list_query("runs", filter_text=params.get("filter"), sort_by=params.get("sort_by"),
                                       page_size=params.get("page_size"), page_token=params.get("page_token"),
                                       scope=f"{experiment_id}|{namespace}")
        except ApiError as err:
            raise err.wrap("Failed to create list options") from None
        outer = "Failed to list runs"
        if experiment_id:
            experiment = self.store.get("experiments", experiment_id)
            if experiment is None:
                raise resource_not_found_error("Experiment", experiment_id).wrap(
                    f"Failed to fetch namespace from experiment {experiment_id}").wrap(
                    f"Failed to list runs due to error fetching namespace for experiment {experiment_id}. "
                    "Try filtering based on namespace").wrap(outer)
            namespace = self._namespace(experiment.get("namespace"))
        try:
            self._run_access("", "list", namespace)
        except ApiError as err:
            raise err.wrap("Failed to list runs due to authorization error. Check if you have permission to "
                           f"access namespace {namespace}").wrap(outer) from None
        docs = self.store.all("runs")
        if experiment_id:
            docs = [d for d in docs if d.get("experiment_id") == experiment_id]
        elif self.multi_user:
            docs = [d for d in docs if self._run_namespace(d) == namespace]
        page, total, token = query.apply(q, docs)
        return wire.render_list("runs", [self._render_run(d) for d in page], total, token)

    def terminate_run(self, run_id: str) -> dict[str, Any]:
        """KFP 2.17 (resource_manager.go TerminateRun, run_store.go TerminateRun): the run becomes
        CANCELING (no history entry: an upstream TODO) and the workflow gets activeDeadlineSeconds=0;
        Argo then fails it, so the run ends FAILED, never CANCELED (fidelity K2)."""
        with self.store.transaction():
            doc = self._run(run_id)
            if doc["state"] not in TERMINABLE:
                raise bad_request(
                    f"Failed to terminate run {run_id}: Failed to terminate a run {run_id}. Row not found "
                    f"(it is {doc['state']}; only PAUSED, PENDING or RUNNING runs can be terminated)"
                )
            self.store.update("runs", run_id, lambda d: d.update(state="CANCELING"))
        self.executor.terminate(run_id)
        return {}

    def retry_run(self, run_id: str) -> dict[str, Any]:
        """resource_manager.go RetryRun + workflow.go GenerateRetryExecution (fidelity K5): only a
        run whose workflow is Failed/Error; anything else is NewBadRequestError → Aborted → 409; a
        node still Pending/Running is NewInternalServerError → 500."""
        outer = "Failed to retry a run"
        deadline = time.monotonic() + RETRY_SETTLE_SECONDS
        while True:
            with self.store.transaction():
                doc = self.store.get("runs", run_id)
                if doc is None:
                    raise resource_not_found_error("Run", run_id).wrap(
                        f"Failed to retry run {run_id} due to error fetching the run").wrap(outer)
                self._check_retryable(doc, outer)
                if not self.executor.is_active(run_id):
                    updated = self.store.update("runs", run_id, lambda d: progress.reset_for_retry(d, time.time()))
                    break
            if time.monotonic() >= deadline:
                # The run's processes are still alive: a node that is still running, as upstream sees it.
                raise self._live_node_error(run_id, doc.get("_workflow") or run_id, "Running", outer)
            time.sleep(0.05)
        assert updated is not None
        self.executor.start(run_id, int(updated["_attempt"]))
        return {}

    def _check_retryable(self, doc: dict[str, Any], outer: str) -> None:
        run_id, state = doc["run_id"], doc.get("state") or ""
        if state == "PENDING" and not doc.get("task_details"):
            # Nothing has reported on the run yet, so it has no workflow manifest.
            raise bad_request_error(
                invalid_input_error("Workflow manifest cannot be empty").message,
                f"Failed to retry run {run_id} due to error fetching workflow manifest",
            ).wrap(outer)
        if state not in RETRYABLE:
            raise bad_request_error("workflow cannot be retried", "Workflow must be Failed/Error to retry").wrap(
                f"Failed to retry run {run_id}").wrap(outer)
        for task in doc.get("task_details") or []:
            phase = _LIVE_NODE_PHASES.get(task.get("state") or "")
            if phase:
                raise self._live_node_error(run_id, task.get("pod_name") or task.get("task_id") or "", phase, outer)

    @staticmethod
    def _live_node_error(run_id: str, node: str, phase: str, outer: str) -> ApiError:
        return internal_server_error(
            "workflow cannot be retried", f"Workflow cannot be retried with node {node} in {phase} phase"
        ).wrap(f"Failed to retry run {run_id}").wrap(outer)

    def set_run_storage(self, run_id: str, state: str) -> dict[str, Any]:
        with self.store.transaction():
            doc = self._run(run_id)
            if state == "AVAILABLE":
                experiment = self.store.get("experiments", doc.get("experiment_id", ""))
                if experiment is not None and experiment.get("storage_state") == "ARCHIVED":
                    raise ApiError(
                        FAILED_PRECONDITION,
                        f"run {run_id} belongs to archived experiment {experiment['experiment_id']}; unarchive the experiment first",
                    )
            self.store.update("runs", run_id, lambda d: d.update(storage_state=state))
        return {}

    def delete_run(self, run_id: str) -> dict[str, Any]:
        doc = self._run(run_id)
        if doc["state"] in TERMINABLE or self.executor.is_active(run_id):
            self.executor.terminate(run_id)
        with self.store.transaction():
            self.store.delete("runs", run_id)
            self.store.delete("specs", run_id)
        # Its executor pods go with it (the kube stand-in must stop listing them at once).
        self.executor.forget(run_id, doc)
        run_dir = self.executor.run_dir(run_id)
        # Outputs can be large; removing them must not hold up the response.
        threading.Thread(target=shutil.rmtree, args=(run_dir,), kwargs={"ignore_errors": True}, daemon=True).start()
        return {}
