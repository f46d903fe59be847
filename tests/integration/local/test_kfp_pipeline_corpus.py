"""Pipelines as users compile them run unchanged on the KFP stand-in (issue 11, acceptance item 8).

Every pipeline in tests/fixtures/corpus/ is written the way the KFP documentation writes it
(default ``@dsl.component``: the ``pip install kfp==…`` bootstrap, some ``packages_to_install`` /
``pip_index_urls``), compiled here with the default compiler, submitted with the real kfp.Client
to the session stand-in (all at once), and must reach the state KFP 2.17 gives it. Step outcomes
are read only through the run state and the run's logs, not through task_details.

The bootstrap follows kfp/dsl/component_factory.py (``_get_packages_to_install_command``) and
kfp/local/subprocess_task_handler.py (``replace_python_executable``, ``use_venv``): see
kfp_bridge/local/kfp/bootstrap.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kfp import compiler

from tests.integration.local.kfp_helpers import TERMINAL, unique, wait_for_state

pytestmark = [
    pytest.mark.integration,
    pytest.mark.xdist_group("kfp-corpus"),
    # Documentation-style components leave base_image at its default, which the SDK warns about.
    pytest.mark.filterwarnings("ignore:The default base_image:FutureWarning"),
]

CORPUS = "tests.fixtures.corpus"
CORPUS_DEADLINE_SECONDS = 240.0


@dataclass(frozen=True)
class Case:
    """:param expected: the state KFP 2.17 gives the run. :param logs: text the run's logs must contain."""

    module: str
    pipeline: str
    expected: str
    arguments: Callable[[Path], dict[str, Any]] = lambda tmp: {}
    logs: tuple[str, ...] = ()
    why: str = ""


CASES = [
    Case("hello_world", "hello_pipeline", "SUCCEEDED", lambda tmp: {"recipient": "KFP"}, ("Hello, KFP!",)),
    Case("addition", "add_pipeline", "SUCCEEDED"),
    Case("parameters", "parameters_pipeline", "SUCCEEDED",
         lambda tmp: {"text": "y", "count": 3, "ratio": 0.25, "flag": False, "items": [7, 8], "config": {"a": 0, "b": 0}}),
    Case("packages_humanize", "describe_pipeline", "SUCCEEDED", logs=("3000000 bytes is 3.0 MB",
         "served by the stand-in's own kfp runtime")),
    Case("packages_same_set", "words_pipeline", "SUCCEEDED"),
    Case("packages_pinned_kfp", "pinned_kfp_pipeline", "SUCCEEDED", logs=("kfp==2.7.0 served by",)),
    Case("packages_index_url", "shout_pipeline", "SUCCEEDED"),
    Case("artifacts", "training_pipeline", "SUCCEEDED"),
    Case("loops", "loop_pipeline", "SUCCEEDED"),
    Case("conditions", "flip_coin_pipeline", "SUCCEEDED", logs=("forced heads",)),
    Case("exit_handler", "exit_handler_pipeline", "SUCCEEDED"),
    Case("retries", "retry_pipeline", "SUCCEEDED", lambda tmp: {"attempts_dir": str(tmp / "retries")},
         ("transient failure on attempt 1", "transient failure on attempt 2")),
    Case("caching", "caching_pipeline", "SUCCEEDED"),
    Case("nested", "outer_pipeline", "SUCCEEDED"),
    Case("namedtuple_outputs", "division_pipeline", "SUCCEEDED"),
    Case("failing", "gated_pipeline", "FAILED", logs=("deliberate failure: score 0.5 is below threshold 0.9",)),
    Case("exit_handler_failure", "exit_handler_failure_pipeline", "FAILED",
         logs=("could not reach db.example.invalid", "final state"), why="the exit task runs, the run stays FAILED"),
    Case("forgot_packages", "forgot_packages_pipeline", "FAILED", logs=("No module named 'yaml'",),
         why="its image has kfp only; pyyaml is the stand-in's, not the component's"),
    Case("install_failure", "missing_package_pipeline", "FAILED",
         logs=("could not install kfp-bridge-no-such-package-7f3a9c",), why="pip fails on a real cluster too"),
    Case("container", "container_pipeline", "FAILED", logs=("needs a container engine", "image 'alpine'")
         , why="KFP runs the image as a pod; the stand-in has no container engine and says so"),
    Case("containerized_python", "containerized_pipeline", "FAILED",
         logs=("needs a container engine", "Containerized Python component"),
         why="its code is in target_image, which only a container engine can run"),
]


@dataclass
class Submitted:
    case: Case
    run_id: str
    tmp: Path
    run: Any = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def compile_pipeline(module: str, name: str, package: Path) -> Path:
    pipeline = getattr(importlib.import_module(f"{CORPUS}.{module}"), name)
    compiler.Compiler().compile(pipeline, str(package))  # default settings, as users compile
    return package


def run_logs(stand_in: Any, run_id: str) -> str:
    """Everything the stand-in keeps as text for a run (the child's log and each step's output)."""
    texts = []
    for path in sorted((stand_in.state_dir / "runs" / run_id).rglob("*")):
        if path.is_file() and path.suffix in (".txt", ".log", ".jsonl") and path.stat().st_size < 5_000_000:
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def environments(stand_in: Any) -> dict[str, dict[str, Any]]:
    """The stand-in's cached venvs: name -> {"ready": READY json, "uses": [use lines], "inode": ...}."""
    out: dict[str, dict[str, Any]] = {}
    root = stand_in.state_dir / "venvs"
    for ready in sorted(root.glob("*/kfp-bridge-env.json")):
        uses_file = ready.parent / "kfp-bridge-uses.jsonl"
        uses = [json.loads(line) for line in uses_file.read_text().splitlines()] if uses_file.exists() else []
        out[ready.parent.name] = {"ready": json.loads(ready.read_text()), "uses": uses, "inode": ready.stat().st_ino}
    return out


def installs(env: dict[str, Any]) -> list[tuple[list[str], list[str]]]:
    """(requirements, pip options) of each ``pip install`` the venv was built from."""
    return [(sorted(i["requirements"]), i["options"]) for i in env["ready"]["installs"]]


@pytest.fixture(scope="module")
def corpus(kfp_stand_in, tmp_path_factory) -> dict[str, Submitted]:
    client = kfp_stand_in.client()
    tmp = tmp_path_factory.mktemp("corpus")
    experiment = unique("corpus")
    submitted: dict[str, Submitted] = {}
    started = time.monotonic()
    for case in CASES:
        package = compile_pipeline(case.module, case.pipeline, tmp / f"{case.module}.yaml")
        result = client.create_run_from_pipeline_package(
            str(package), arguments=case.arguments(tmp), run_name=unique(case.module), experiment_name=experiment)
        submitted[case.module] = Submitted(case, result.run_id, tmp)
    pending = dict(submitted)
    while pending and time.monotonic() - started < CORPUS_DEADLINE_SECONDS:
        for module, item in list(pending.items()):
            run = client.get_run(item.run_id)
            if run.state in TERMINAL:
                item.run, item.seconds = run, time.monotonic() - started
                del pending[module]
        time.sleep(1.0)
    for item in pending.values():
        item.run = client.get_run(item.run_id)
    print(f"\ncorpus: {len(CASES)} pipelines in {time.monotonic() - started:.1f} s")
    for item in submitted.values():
        print(f"  {item.case.module:24} {item.run.state:10} done after {item.seconds:.1f} s")
    return submitted


def test_corpus_has_the_documented_shapes():
    assert len(CASES) >= 15
    assert len({case.module for case in CASES}) == len(CASES)
    assert {"FAILED", "SUCCEEDED"} == {case.expected for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[case.module for case in CASES])
def test_pipeline_reaches_the_state_kfp_gives_it(case: Case, corpus: dict[str, Submitted], kfp_stand_in):
    item = corpus[case.module]
    logs = run_logs(kfp_stand_in, item.run_id)
    assert item.run.state == case.expected, (
        f"{case.module}: {item.run.state}, KFP gives {case.expected} {case.why}\n--- run logs (tail) ---\n{logs[-4000:]}")
    for text in case.logs:
        assert text in logs, f"{case.module}: {text!r} not in the run's logs\n--- tail ---\n{logs[-4000:]}"
    assert "No module named pip" not in logs


def test_retried_step_ran_three_times(corpus: dict[str, Submitted]):
    item = corpus["retries"]
    assert sorted(p.name for p in (item.tmp / "retries").iterdir()) == ["attempt-1", "attempt-2", "attempt-3"]


def test_same_requirement_set_shares_one_environment(corpus: dict[str, Submitted], kfp_stand_in):
    """Three runs submitted together ask for humanize (one also pins kfp==2.7.0, served by the runtime)."""
    humanize = [env for env in environments(kfp_stand_in).values() if installs(env) == [(["humanize"], [])]]
    assert len(humanize) == 1, environments(kfp_stand_in)
    uses = humanize[0]["uses"]
    runs = {corpus[m].run_id for m in ("packages_humanize", "packages_same_set", "packages_pinned_kfp")}
    assert runs <= {use["run_id"] for use in uses}
    assert sum(use["created"] for use in uses) == 1, uses
    # Nothing was installed into the stand-in's own environment (this test runs in that venv).
    importlib.invalidate_caches()
    assert importlib.util.find_spec("humanize") is None
    assert importlib.util.find_spec("toolz") is None
    assert importlib.util.find_spec("greeting_helpers") is None


def test_second_run_reuses_the_environment(kfp_stand_in, tmp_path, capsys, record_property):
    client = kfp_stand_in.client()
    package = compile_pipeline("packages_reuse", "reuse_pipeline", tmp_path / "reuse.yaml")
    timings = []
    for attempt in (1, 2):
        started = time.monotonic()
        # Caching off: a cached step would not run at all, and this test is about its install.
        result = client.create_run_from_pipeline_package(str(package), run_name=unique(f"reuse-{attempt}"),
                                                         enable_caching=False)
        run = wait_for_state(client, result.run_id, timeout=180)
        assert run.state == "SUCCEEDED", run_logs(kfp_stand_in, result.run_id)[-4000:]
        envs = [e for e in environments(kfp_stand_in).values() if installs(e) == [(["toolz"], [])]]
        assert len(envs) == 1
        use = next(u for u in envs[0]["uses"] if u["run_id"] == result.run_id)
        timings.append((result.run_id, use, envs[0], time.monotonic() - started))
    (_, first, env1, run1), (_, second, env2, run2) = timings
    line = (f"first run: environment {'created' if first['created'] else 'reused'} in {first['seconds']:.2f} s "
            f"(run {run1:.1f} s); second run: {'created' if second['created'] else 'reused'} in "
            f"{second['seconds']:.2f} s (run {run2:.1f} s)")
    record_property("environment_timings", line)  # in the junit report, also under xdist
    with capsys.disabled():
        print(f"\n{line}")
    assert not second["created"]
    assert second["seconds"] < 2.0, second
    # Not recreated: the same ready marker (file and creation time) serves the second run.
    assert env2["inode"] == env1["inode"]
    assert env2["ready"]["created_at"] == env1["ready"]["created_at"]
    assert sum(u["created"] for u in env2["uses"]) == 1
