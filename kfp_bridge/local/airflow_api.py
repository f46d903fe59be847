"""A small client for the Airflow 3 REST API (v2) that tests and `make up` drive Airflow with.

It talks to any Airflow 3 api-server that uses the SimpleAuthManager: a JWT comes from
``POST /auth/token`` for a named user and is cached per user. The thin verbs (``get``, ``post``,
``patch``) return the raw ``httpx.Response`` so tests can assert refusals (401/403); the named
helpers raise :class:`AirflowApiError` on any non-2xx answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

API = "/api/v2"
TERMINAL_RUN_STATES = ("success", "failed")
# Task states after which a task instance will not change without a clear.
TERMINAL_TASK_STATES = ("success", "failed", "skipped", "upstream_failed", "removed")
_PAGE = 100  # the api-server's default [api] maximum_page_limit


class AirflowApiError(RuntimeError):
    """A REST call answered with a non-2xx status; the message carries method, path and body."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.body = response.text
        request = response.request
        super().__init__(
            f"{request.method} {request.url.path} -> HTTP {response.status_code}: {response.text[:2000]}"
        )


def _q(part: str) -> str:
    # Run ids contain ':' and '+' (manual__2025-01-01T00:00:00+00:00); keep them intact in the path.
    return quote(part, safe="")


class AirflowApiClient:
    """Airflow 3 REST API v2 client authenticated through the SimpleAuthManager.

    :param base_url: the api-server root, e.g. ``http://127.0.0.1:8080``.
    :param passwords: user name -> password, used to obtain JWTs from ``POST /auth/token``.
    :param request_timeout: seconds for every single HTTP call (a hung server must not hang a test).
    """

    def __init__(self, base_url: str, passwords: Mapping[str, str], *, request_timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.passwords = dict(passwords)
        self.request_timeout = request_timeout
        self._tokens: dict[str, str] = {}
        self._http: httpx.Client | None = None

    # -- transport -----------------------------------------------------------------------------

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.base_url, timeout=self.request_timeout)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def token(self, user: str = "admin") -> str:
        """Return a JWT for ``user`` (cached; the api-server issues 24 h tokens by default)."""
        if user not in self._tokens:
            if user not in self.passwords:
                raise KeyError(
                    f"no password known for Airflow user {user!r}; known: {sorted(self.passwords)}"
                )
            response = self.http.post(
                "/auth/token", json={"username": user, "password": self.passwords[user]}
            )
            if response.status_code not in (200, 201):
                raise AirflowApiError(response)
            self._tokens[user] = response.json()["access_token"]
        return self._tokens[user]

    def request(self, method: str, path: str, *, user: str | None = "admin", **kwargs: Any) -> httpx.Response:
        """Send one request; ``user=None`` sends it anonymously. Never raises on HTTP status."""
        headers = dict(kwargs.pop("headers", None) or {})
        if user is not None:
            headers["Authorization"] = f"Bearer {self.token(user)}"
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, *, user: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, user=user, **kwargs)

    def post(
        self, path: str, json: Any = None, *, user: str | None = "admin", **kwargs: Any
    ) -> httpx.Response:
        return self.request("POST", path, user=user, json=json, **kwargs)

    def patch(
        self, path: str, json: Any = None, *, user: str | None = "admin", **kwargs: Any
    ) -> httpx.Response:
        return self.request("PATCH", path, user=user, json=json, **kwargs)

    def _json(self, method: str, path: str, *, user: str | None = "admin", **kwargs: Any) -> Any:
        response = self.request(method, path, user=user, **kwargs)
        if response.is_error:
            raise AirflowApiError(response)
        return response.json()

    def _paged(self, path: str, key: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = self._json("GET", path, params={**(params or {}), "limit": _PAGE, "offset": len(items)})
            items.extend(page[key])
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    # -- health and dags -----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /api/v2/monitor/health`` (no auth needed)."""
        return self._json("GET", f"{API}/monitor/health", user=None)

    def list_dags(self) -> list[dict[str, Any]]:
        return self._paged(f"{API}/dags", "dags")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        response = self.get(f"{API}/dags/{_q(dag_id)}")
        if response.status_code == 404:
            return None
        if response.is_error:
            raise AirflowApiError(response)
        return response.json()

    def import_errors(self) -> list[dict[str, Any]]:
        return self._paged(f"{API}/importErrors", "import_errors")

    def wait_dag_parsed(self, dag_id: str, timeout: float = 60.0, *, file_name: str | None = None) -> dict:
        """Wait until the dag-processor has serialized ``dag_id``; return its DAG record.

        :param file_name: the DAG file's base name; an import error for it fails fast instead of
            waiting out the timeout.
        """

        def check() -> dict[str, Any] | None:
            if file_name is not None:
                for error in self.import_errors():
                    if str(error.get("filename", "")).endswith(file_name):
                        raise RuntimeError(
                            f"DAG file {file_name} failed to import:\n{error.get('stack_trace')}"
                        )
            return self.dag(dag_id)

        return _poll(
            check, timeout, lambda: f"DAG {dag_id!r} not parsed; import errors: {self.import_errors()}"
        )

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        return self._json("PATCH", f"{API}/dags/{_q(dag_id)}", json={"is_paused": paused})

    # -- dag runs ------------------------------------------------------------------------------

    def trigger_dag(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        logical_date: datetime | str | None = None,
        *,
        run_id: str | None = None,
        user: str = "admin",
    ) -> str:
        """Create a manual DAG run and return its ``dag_run_id``.

        ``logical_date`` is required by the API schema but may be null (Airflow 3 runs without one).
        """
        if isinstance(logical_date, datetime):
            if logical_date.tzinfo is None:
                raise ValueError("logical_date must be timezone-aware, e.g. pendulum.datetime(..., tz='UTC')")
            logical_date = logical_date.isoformat()
        body: dict[str, Any] = {"logical_date": logical_date, "conf": dict(conf or {})}
        if run_id is not None:
            body["dag_run_id"] = run_id
        return self._json("POST", f"{API}/dags/{_q(dag_id)}/dagRuns", user=user, json=body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._json("GET", f"{API}/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def wait_dag_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 120.0,
        states: Iterable[str] = TERMINAL_RUN_STATES,
    ) -> str:
        """Wait until the run reaches one of ``states``; return that state."""
        wanted = set(states)

        def check() -> str | None:
            state = self.dag_run(dag_id, run_id)["state"]
            return state if state in wanted else None

        return _poll(check, timeout, lambda: self._run_summary(dag_id, run_id, wanted))

    def _run_summary(self, dag_id: str, run_id: str, wanted: set[str]) -> str:
        run = self.dag_run(dag_id, run_id)
        tis = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in self.task_instances(dag_id, run_id)}
        return f"run {dag_id}/{run_id} is {run['state']!r}, not in {sorted(wanted)}; task states: {tis}"

    # -- task instances ------------------------------------------------------------------------

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._paged(f"{API}/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances", "task_instances")

    def _ti_path(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        path = f"{API}/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
        return path if map_index == -1 else f"{path}/{map_index}"

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        return self._json("GET", self._ti_path(dag_id, run_id, task_id, map_index))

    def task_tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of a task instance (the task instance history plus the current try)."""
        return self._json("GET", f"{self._ti_path(dag_id, run_id, task_id, map_index)}/tries")[
            "task_instances"
        ]

    def wait_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str],
        timeout: float = 120.0,
        *,
        map_index: int = -1,
    ) -> str:
        """Wait until the task instance is in one of ``states`` (e.g. ``("deferred",)``); return it."""
        wanted = set(states)

        def check() -> str | None:
            response = self.get(self._ti_path(dag_id, run_id, task_id, map_index))
            if response.status_code == 404:  # not created yet (mapped tasks expand late)
                return None
            if response.is_error:
                raise AirflowApiError(response)
            state = response.json()["state"]
            return state if state in wanted else None

        return _poll(
            check,
            timeout,
            lambda: (
                f"task {task_id}[{map_index}] in {dag_id}/{run_id} never reached {sorted(wanted)}: "
                f"{self.task_instance(dag_id, run_id, task_id, map_index).get('state')!r}"
            ),
        )

    def clear_task(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Iterable[str],
        *,
        only_failed: bool = False,
        map_indexes: Iterable[int] | None = None,
        include_downstream: bool = False,
        user: str = "admin",
    ) -> list[dict[str, Any]]:
        """Clear task instances of one run so the scheduler runs them again; return what was cleared.

        :param map_indexes: restrict a mapped task to these indexes (applied to every task id).
        """
        targets: list[Any] = list(task_ids)
        if map_indexes is not None:
            targets = [[task_id, index] for task_id in targets for index in map_indexes]
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": targets,
            "only_failed": only_failed,
            "include_downstream": include_downstream,
            "reset_dag_runs": True,
        }
        result = self._json("POST", f"{API}/dags/{_q(dag_id)}/clearTaskInstances", user=user, json=body)
        return result["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The whole log of one try, one line per structured record (``level event key=value``)."""
        payload = self._json(
            "GET",
            f"{API}/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}/logs/{try_number}",
            params={"full_content": "true", "map_index": map_index},
            headers={"Accept": "application/json"},
        )
        return "\n".join(_render_log_record(record) for record in payload["content"])

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        """The XCom value as the JSON the task pushed (``None`` payloads come back as ``None``)."""
        path = f"{self._ti_path(dag_id, run_id, task_id)}/xcomEntries/{_q(key)}"
        return self._json("GET", path, params={"map_index": map_index})["value"]


def _render_log_record(record: Any) -> str:
    if not isinstance(record, dict):
        return str(record)
    extras = " ".join(
        f"{k}={v}" for k, v in record.items() if k not in {"timestamp", "event", "level", "logger"}
    )
    line = f"[{record.get('level', '')}] {record.get('event', '')}"
    return f"{line} {extras}" if extras else line


def _poll(
    check: Callable[[], Any], timeout: float, describe: Callable[[], str], interval: float = 0.5
) -> Any:
    """Call ``check`` until it returns something other than None; TimeoutError carries ``describe()``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            try:
                detail = describe()
            except Exception as exc:  # the description is best effort; never mask the timeout
                detail = f"(could not describe state: {exc!r})"
            raise TimeoutError(f"timed out after {timeout:.0f}s: {detail}")
        time.sleep(interval)
