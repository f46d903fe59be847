"""Child process entry: execute one attempt of a run with kfp.local and report progress.

Started by :mod:`kfp_bridge.local.kfp.executor` as ``python -m kfp_bridge.local.kfp.child RUN_DIR
ATTEMPT`` in a new session, so terminating the run can kill this process and every component
process below it with one ``killpg``.

kfp.local has no progress callbacks, so this module wraps its orchestrator functions to append
JSON-lines events (``task_started``, ``task_finished``, ``run_finished``) to
``RUN_DIR/events-ATTEMPT.jsonl``, which the server tails. Each step's output (its executor pod's
``main`` log) goes to ``RUN_DIR/logs/attempt-ATTEMPT/<path>.log`` as it is printed.

Two caches: one private to the run (``RUN_DIR/retry-cache``), so a task that succeeded in an
earlier attempt is not executed again on retry (Argo's retry keeps succeeded nodes); and kfp.local's
own cross-run cache (``RUN_DIR/context.json`` names its root), used for tasks whose
``cachingOptions.enableCache`` is set, as KFP's driver reuses a cached execution (fidelity K6).
A cross-run hit is reported ``cached`` so its ``executor`` node shows Skipped.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import json
import re
import subprocess
import sys
import threading
import time
import traceback
import types
from pathlib import Path
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Failure|Warning)\b")

# Where in the pipeline the current thread is ("exit-handler-1", "for-loop-2-iteration-0", ...).
_scope: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("scope", default=())
# Lines printed by the component process of the current task, to name its error.
_output: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("output", default=None)
# The current task's log file (its executor pod's main container log).
_log: contextvars.ContextVar[Any] = contextvars.ContextVar("log", default=None)


class EventLog:
    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def emit(self, **event: Any) -> None:
        event.setdefault("time", time.time())
        line = json.dumps(event, default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


class _ContextThreadPool(concurrent.futures.ThreadPoolExecutor):
    """ParallelFor iterations run in pool threads; carry the pipeline scope into them."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        ctx = contextvars.copy_context()
        return super().submit(ctx.run, fn, *args, **kwargs)


def error_line(lines: list[str]) -> str:
    """The exception line of the last traceback a component printed, else its last output line."""
    text = [_ANSI.sub("", line.rstrip("\n")) for line in lines]
    start = max((i for i, line in enumerate(text) if line.startswith("Traceback (most recent call last)")), default=-1)
    if start >= 0:
        tail = [line for line in text[start + 1:] if line.strip() and not line.startswith((" ", "\t"))]
        if tail:
            return tail[-1].strip()
    candidates = [line.strip() for line in text if _EXCEPTION_LINE.match(line.strip())]
    if candidates:
        return candidates[-1]
    non_empty = [line.strip() for line in text if line.strip()]
    return non_empty[-1] if non_empty else "the component exited with a non-zero status and printed nothing"


def _run_local_subprocess(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
    """kfp.local's own loop (subprocess_task_handler.run_local_subprocess), also keeping the output."""
    import os

    env = {**os.environ, **env_vars} if env_vars else None
    captured = _output.get()
    log = _log.get()
    with subprocess.Popen(
        full_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    ) as process:
        assert process.stdout is not None
        for line in iter(process.stdout.readline, ""):
            print(line, end="")
            if captured is not None:
                captured.append(line)
            if log is not None:
                log.write(line)
                log.flush()
        print("\n")
        return process.wait()


class RetryCache:
    """Outputs of succeeded tasks, keyed by task path and inputs (kfp.local's own key and codec)."""

    def __init__(self, root: Path) -> None:
        from kfp.local.cache import LocalCache

        self._cache = LocalCache(cache_root=str(root))

    def key(self, path: tuple[str, ...], task_spec: Any, components: Any, executors: Any, io_store: Any) -> str | None:
        from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

        component_name = task_spec.component_ref.name
        executor_spec = executors[components[component_name].executor_label]
        if executor_spec.WhichOneof("spec") != "container":
            return None
        try:
            arguments = OrchestratorUtils.make_task_arguments(task_inputs_spec=task_spec.inputs, io_store=io_store)
        except Exception:  # the real call reports the problem; the cache just stays out of the way
            return None
        container = executor_spec.container
        return self._cache.compute_key(
            # The path makes the key per task: two tasks running the same component stay separate.
            component_name="/".join(path) + "|" + component_name,
            image=container.image,
            full_command=list(container.command) + list(container.args),
            arguments=arguments,
            env_vars={e.name: e.value for e in container.env},
        )

    def get(self, key: str | None) -> dict[str, Any] | None:
        return self._cache.get(key) if key else None

    def put(self, key: str | None, outputs: dict[str, Any]) -> None:
        if key:
            self._cache.put(key, outputs)


def _cross_run_hit(kw: dict[str, Any]) -> Any:
    """kfp.local's own cache lookup (task_executor.execute_single_task), done first so a hit is known."""
    from kfp.local import cache as cache_module
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

    task_spec = kw["task_spec"]
    local_cache = cache_module.get_local_cache()
    executor_spec = kw["executors"][kw["components"][task_spec.component_ref.name].executor_label]
    if local_cache is None or not task_spec.caching_options.enable_cache or executor_spec.WhichOneof("spec") != "container":
        return None
    try:
        arguments = OrchestratorUtils.make_task_arguments(task_inputs_spec=task_spec.inputs, io_store=kw["io_store"])
    except Exception:  # the real call reports the problem
        return None
    container = executor_spec.container
    key = local_cache.compute_key(
        component_name=task_spec.component_ref.name,
        image=container.image,
        full_command=list(container.command) + list(container.args),
        arguments=arguments,
        env_vars={e.name: e.value for e in container.env},
        custom_cache_key=(task_spec.caching_options.cache_key or None),
    )
    return local_cache.get(key)


def _takes_final_status(component: Any) -> bool:
    from kfp.pipeline_spec import pipeline_spec_pb2

    final = pipeline_spec_pb2.ParameterType.TASK_FINAL_STATUS
    return any(p.parameter_type == final for p in component.input_definitions.parameters.values())


def install_hooks(events: EventLog, cache: RetryCache, attempt: int, logs_dir: Path | None = None) -> None:
    from kfp.local import executor_input_utils, status, subprocess_task_handler
    from kfp.local.orchestrator import enhanced_dag_orchestrator as enhanced
    from kfp.local.orchestrator import task_executor

    concurrent.futures.ThreadPoolExecutor = _ContextThreadPool  # type: ignore[misc]
    # One stable output folder per attempt instead of a timestamped one.
    executor_input_utils.get_local_pipeline_resource_name = lambda name: f"attempt-{attempt}"
    subprocess_task_handler.run_local_subprocess = _run_local_subprocess

    original_single = task_executor.execute_single_task
    original_task = enhanced.execute_task
    original_loop = enhanced._run_parallel_for_task

    def execute_single_task(**kw: Any) -> Any:
        path = (*_scope.get(), kw["task_name"])
        if _takes_final_status(kw["components"][kw["task_spec"].component_ref.name]):
            # On KFP the status carries the run's own resource name, so an exit task never hits the
            # cache; kfp.local's status is the same in every run, so keep such tasks out of it.
            task_spec = type(kw["task_spec"])()
            task_spec.CopyFrom(kw["task_spec"])
            task_spec.caching_options.enable_cache = False
            kw = {**kw, "task_spec": task_spec}
        key = cache.key(path, kw["task_spec"], kw["components"], kw["executors"], kw["io_store"])
        cached = cache.get(key)
        if cached is None:
            cached = _cross_run_hit(kw)
        if cached is not None:
            events.emit(type="task_finished", path="/".join(path), state="SUCCEEDED", cached=True)
            return cached, status.Status.SUCCESS
        log = None
        if logs_dir is not None:
            from kfp_bridge.local.kfp.pods import step_log_name

            # Opened before the step is announced, so its pod's log link never dangles.
            log = (logs_dir / step_log_name("/".join(path))).open("w", encoding="utf-8")
        events.emit(type="task_started", path="/".join(path))
        lines: list[str] = []
        token = _output.set(lines)
        log_token = _log.set(log)
        try:
            outputs, task_status = original_single(**kw)
        except Exception as exc:
            events.emit(type="task_finished", path="/".join(path), state="FAILED", error=_ANSI.sub("", str(exc)))
            raise
        finally:
            _output.reset(token)
            _log.reset(log_token)
            if log is not None:
                log.close()
        if task_status == status.Status.SUCCESS:
            cache.put(key, outputs)
            events.emit(type="task_finished", path="/".join(path), state="SUCCEEDED")
        else:
            events.emit(type="task_finished", path="/".join(path), state="FAILED", error=error_line(lines))
        return outputs, task_status

    def execute_task(**kw: Any) -> Any:
        component = kw["components"][kw["task_spec"].component_ref.name]
        if component.WhichOneof("implementation") != "dag":
            return original_task(**kw)
        path = (*_scope.get(), kw["task_name"])
        children = list(component.dag.tasks.keys())
        events.emit(type="task_started", path="/".join(path))
        token = _scope.set(path)
        try:
            outputs, task_status = original_task(**kw)
        except Exception as exc:
            events.emit(type="task_finished", path="/".join(path), state="FAILED", error=str(exc), children=children)
            raise
        finally:
            _scope.reset(token)
        if task_status == status.Status.SUCCESS:
            events.emit(type="task_finished", path="/".join(path), state="SUCCEEDED", children=children)
        else:
            stack = kw.get("fail_stack") or []
            error = f"inner task {stack[-1]!r} failed" if stack else "an inner task failed"
            events.emit(type="task_finished", path="/".join(path), state="FAILED", error=error, children=children)
        return outputs, task_status

    def run_parallel_for_task(**kw: Any) -> bool:
        path = (*_scope.get(), kw["task_name"])
        events.emit(type="task_started", path="/".join(path))
        token = _scope.set(path)
        try:
            failed = original_loop(**kw)
        finally:
            _scope.reset(token)
        if failed:
            events.emit(type="task_finished", path="/".join(path), state="FAILED", error="a loop iteration failed")
        else:
            events.emit(type="task_finished", path="/".join(path), state="SUCCEEDED")
        return failed

    task_executor.execute_single_task = execute_single_task
    enhanced.execute_task = execute_task
    enhanced._run_parallel_for_task = run_parallel_for_task


def _skip_kfp_client_import() -> None:
    """``import kfp`` loads kfp.Client and with it the kubernetes client (~4 s on a busy CI core);
    a run only needs kfp.local, so a stand-in module takes kfp.client's place in this process."""
    if "kfp" not in sys.modules:
        stub = types.ModuleType("kfp.client")
        stub.Client = None  # type: ignore[attr-defined]
        sys.modules["kfp.client"] = stub


def run(run_dir: Path, attempt: int) -> int:
    events = EventLog(run_dir / f"events-{attempt}.jsonl")
    try:
        _skip_kfp_client_import()
        from kfp import components, local

        spec_path = run_dir / "pipeline.json"
        params = json.loads((run_dir / "params.json").read_text())
        logs_dir = run_dir / "logs" / f"attempt-{attempt}"
        logs_dir.mkdir(parents=True, exist_ok=True)
        install_hooks(events, RetryCache(run_dir / "retry-cache"), attempt, logs_dir)
        # Issue 11: default-compiled components' pip bootstrap and packages_to_install (bootstrap.py).
        from kfp_bridge.local.kfp import bootstrap
        bootstrap.install(run_dir)
        workspace = run_dir / f"workspace-{attempt}"
        workspace.mkdir(parents=True, exist_ok=True)
        context_path = run_dir / "context.json"
        context = json.loads(context_path.read_text()) if context_path.exists() else {}
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(run_dir / "outputs"),
            workspace_root=str(workspace),
            raise_on_error=True,
            # kfp.local's cross-run cache; only tasks with cachingOptions.enableCache use it.
            enable_caching=bool(context.get("cache_root")),
            cache_root=context.get("cache_root"),
        )
        events.emit(type="run_started")
        pipeline = components.load_component_from_file(str(spec_path))
        pipeline(**params)
    except BaseException as exc:
        traceback.print_exc()
        message = _ANSI.sub("", str(exc)) or exc.__class__.__name__
        events.emit(type="run_finished", state="FAILED", error=message)
        return 1
    events.emit(type="run_finished", state="SUCCEEDED")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m kfp_bridge.local.kfp.child RUN_DIR ATTEMPT", file=sys.stderr)
        return 2
    return run(Path(args[0]), int(args[1]))


if __name__ == "__main__":
    sys.exit(main())
