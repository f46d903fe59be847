"""Every DAG in dags/ succeeds however it is started (issue 14, acceptance 5).

One real Airflow 3 stack (api-server, scheduler, dag-processor, triggerer on PostgreSQL) parses a
copy of dags/ as it is (pipelines included); only connections, environment and run conf differ
from production. It talks to a private KFP stand-in and a private kube stand-in, so the example DAG
ids, the KFP runs tagged with them and the InferenceService ``iris`` are this module's alone.

Each DAG is started each way that applies, and each run must end ``success`` with its real effect:

=====================  ====  ==========  ==========  ===  ========  ===========
DAG                    UI    REST date   REST null   CLI  schedule  asset event
=====================  ====  ==========  ==========  ===  ========  ===========
kfp_train              yes   yes         yes         yes  @daily    --
train_and_serve        yes   yes         yes         yes  @daily    --
kfp_serve              yes   yes         yes         yes  (asset)   yes
release_with_approval  yes   yes         yes         yes  None      --
=====================  ====  ==========  ==========  ===  ========  ===========

* UI: Airflow's own Trigger form in headless Chromium, submitted as it opens (every param at its
  default). REST: ``POST /api/v2/dags/{id}/dagRuns`` with ``logical_date`` 2026-11-20T12:00Z and
  with ``logical_date: null``. CLI: ``airflow dags trigger <id>`` in the stack's environment.
  Schedule: the stack creates DAGs paused; unpausing the @daily DAGs (start_date in the past,
  catchup=False) makes the scheduler create the latest interval's run at once. Asset event:
  kfp_serve's only schedule, so its "schedule" is the asset-event way.
* Effects: a training run's one KFP run SUCCEEDED on the stand-in and wrote ``model.joblib`` under
  the run's model_root; kfp_train's run recorded one ``kfp://iris-train/model`` event naming that
  model; a serving run's task reports ``promoted`` for exactly the expected model, and the
  InferenceService then serves that model alone (spec, traffic, and predictions answered by the
  reported revision). release_with_approval is approved through the HITL REST API (Required
  Actions), after waiting out the scheduler race tests/integration/operators/
  test_kserve_release_airflow.py describes.

How the ways share one stack within the time budget (they run concurrently where Airflow allows):

* Runs started with conf (REST, CLI) name their own InferenceService (``tas-rest-date``, ...) and
  a model_root under the test's temp dir, so they run in parallel with everything else.
* Runs with the defaults (UI form, schedule, asset event) all roll out to ``iris`` and write to the
  DAGs' default model_root, ``/tmp/kfp-bridge/models``: they run one after another, and ``iris`` is
  put back on a test model before each, so every one is a real rollout (two default runs on the same
  day train into the same directory; a second rollout of an unchanged URI would be a no-op).
* kfp_serve stays paused while kfp_train's first four runs finish: Airflow queues asset events only
  for unpaused consumers, so none of those events starts a serving run. kfp_train's CLI run comes
  last, with kfp_serve unpaused, and its event must create exactly one ``asset_triggered`` run that
  exactly that event triggered (Airflow 3.3 lists the events recorded while the DAG was paused among
  the run's upstream events too, with ``triggering: false``). kfp_serve's REST/CLI runs roll out models those earlier kfp_train runs
  published (conf ``model_uri``); its UI run rolls out the asset's latest event.

``pytest -s`` prints a table DAG x way -> state, seconds (the run's queued_at to end_date) and tries
when a task needed more than one.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pendulum
import pytest

from kfp_bridge.local.airflow import AirflowStack
from kfp_bridge.local.airflow_api import AirflowApiClient
from tests.fixtures.airflow_checks import explain
from tests.fixtures.kfp_stand_in import KfpStandIn, start_kfp_stand_in
from tests.fixtures.kube_stand_in import TEST_TIMINGS, IrisModels, KubeStandIn, start_kube_stand_in
from tests.integration.dags.every_way import effects
from tests.integration.dags.every_way.starts import Starter, Way, approve, finished, runs

pytestmark = [
    pytest.mark.e2e,  # make e2e: about 7 minutes alone, outside make test's budget
    pytest.mark.airflow,
    pytest.mark.integration,
    pytest.mark.xdist_group("dags_every_way"),
    pytest.mark.timeout(900),
]

REPO = Path(__file__).resolve().parents[3]
TRAIN, SERVE, BOTH, RELEASE = "kfp_train", "kfp_serve", "train_and_serve", "release_with_approval"
WAYS: dict[str, tuple[Way, ...]] = {
    TRAIN: (Way.UI, Way.REST_DATE, Way.REST_NULL, Way.CLI, Way.SCHEDULE),
    BOTH: (Way.UI, Way.REST_DATE, Way.REST_NULL, Way.CLI, Way.SCHEDULE),
    SERVE: (Way.UI, Way.REST_DATE, Way.REST_NULL, Way.CLI, Way.ASSET),
    RELEASE: (Way.UI, Way.REST_DATE, Way.REST_NULL, Way.CLI),
}
NOT_APPLICABLE = {(SERVE, Way.SCHEDULE): "= asset event", (RELEASE, Way.SCHEDULE): "n/a: schedule=None"}
CONF_WAYS = (Way.REST_DATE, Way.REST_NULL, Way.CLI)
LOGICAL_DATE = pendulum.datetime(2026, 11, 20, 12, tz="UTC")
DEFAULT_ROOT = "/tmp/kfp-bridge/models"  # the DAGs' model_root default
DEFAULT_ISVC = "iris"  # the DAGs' inference_service default
SHORT = {BOTH: "tas", SERVE: "serve", RELEASE: "rel"}
OWN_ISVCS = {(dag, way): f"{short}-{way.slug}" for dag, short in SHORT.items() for way in CONF_WAYS}
TASKS = {TRAIN: "train_iris", BOTH: "train_iris", RELEASE: "train"}  # the KfpRunOperator of each DAG
RUN_TIMEOUT = 420.0


@dataclass
class Outcome:
    """One DAG started one way: its run, how it ended, what it did (``problem`` empty when all held)."""

    dag_id: str
    way: Way
    run_id: str = ""
    state: str = "not started"
    seconds: float | None = None
    tries: int = 0
    effect: str = ""
    problem: str = ""

    def cell(self) -> str:
        seconds = "" if self.seconds is None else f" {self.seconds:.0f}s"
        tries = f" {self.tries} tries" if self.tries > 1 else ""
        checked = " CHECK FAILED" if self.problem else ""
        return f"{self.state}{seconds}{tries}{checked}"


@dataclass
class Stand:
    stack: AirflowStack
    kfp: KfpStandIn
    kube: KubeStandIn
    models: IrisModels
    roots: Path  # model roots of the runs started with conf
    starter: Starter


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory, airflow_db_cache: Path, iris_models: IrisModels) -> Iterator[Stand]:
    root = tmp_path_factory.mktemp("every-way")
    with (
        start_kfp_stand_in(root / "kfp" / "state", token=f"tok-{secrets.token_hex(8)}") as kfp,
        start_kube_stand_in(root / "kube", token=secrets.token_hex(16), env=TEST_TIMINGS) as kube,
    ):
        # Created first: their model servers load while Airflow starts.
        for name in (DEFAULT_ISVC, *OWN_ISVCS.values()):
            kube.create_isvc(name, iris_models.v1)
        conns = {
            "AIRFLOW_CONN_KFP_DEFAULT": json.dumps(
                {"conn_type": "kfp", "host": kfp.host, "extra": {"token_path": str(kfp.token_file)}}
            ),
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
                {
                    "conn_type": "kubernetes",
                    "extra": {"kube_config_path": str(kube.kubeconfig), "ingress_address": kube.ingress_url},
                }
            ),
            # Paused until the test says: unpausing starts the schedule way, and kfp_serve must stay
            # paused while kfp_train's first runs publish their models.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        }
        dags = shutil.copytree(REPO / "dags", root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
        stack = AirflowStack(home=root / "home", dags_folder=dags, env=conns, cache_dir=airflow_db_cache)
        with stack:
            stack.wait_ready(240)
            for dag_id in WAYS:
                stack.wait_dag_parsed(dag_id, 180, file_name=f"{dag_id}.py")
                assert stack.dag(dag_id)["is_paused"] is True
            for name in (DEFAULT_ISVC, *OWN_ISVCS.values()):
                kube.wait_condition(name, "Ready", generation=1, timeout=180)
            (root / "browser").mkdir()
            starter = Starter(stack, root / "browser")
            try:
                yield Stand(stack, kfp, kube, iris_models, root / "models", starter)
            finally:
                starter.close()


class Campaign:
    """Starts every (DAG, way) in the order the module docstring gives and records an Outcome each."""

    def __init__(self, stand: Stand) -> None:
        self.stand = stand
        self.outcomes = {(dag, way): Outcome(dag, way) for dag, ways in WAYS.items() for way in ways}
        self.events: dict[Way, dict[str, Any]] = {}  # kfp_train's asset event, by the way its run started
        self.checks: dict[str, Callable[[AirflowApiClient, Outcome, dict[str, Any], str | None], str]] = {
            TRAIN: self._check_train,
            BOTH: self._check_both,
            SERVE: self._check_serve,
            RELEASE: self._check_release,
        }

    def run(self) -> None:
        api = self._api()
        for dag_id in (TRAIN, BOTH, RELEASE):  # the @daily ones get their scheduled run now
            api.set_paused(dag_id, False)
        with ThreadPoolExecutor(max_workers=24) as pool:
            training = [pool.submit(self.start, TRAIN, way) for way in (Way.SCHEDULE, Way.UI, Way.REST_DATE, Way.REST_NULL)]
            own = [pool.submit(self.start, dag, way) for dag in (BOTH, RELEASE) for way in CONF_WAYS]
            lane = pool.submit(self.default_lane, pool, training)
            done, _ = wait([*training, *own, lane])
            for future in done:
                future.result()  # a bug in the campaign itself, not a run's problem
        api.close()

    def default_lane(self, pool: ThreadPoolExecutor, training: list[Future[None]]) -> None:
        """The runs with default params, one at a time: they all roll out to ``iris``."""
        self.start(BOTH, Way.SCHEDULE)
        self.start(BOTH, Way.UI, reset=True)
        wait(training)  # kfp_train's events so far must not reach kfp_serve
        api = self._api()
        api.set_paused(SERVE, False)
        models = {Way.REST_DATE: Way.REST_DATE, Way.REST_NULL: Way.REST_NULL, Way.CLI: Way.SCHEDULE}
        serving = [pool.submit(self.start, SERVE, way, model_uri=self._published(models[way])) for way in CONF_WAYS]
        events = effects.asset_events(api)
        latest = events[-1]["extra"]["model_uri"] if events else None  # what the form's run must roll out
        api.close()
        self.start(SERVE, Way.UI, model_uri=latest, reset=True)
        self.start(RELEASE, Way.UI, reset=True)
        self.start(TRAIN, Way.CLI, reset=True)  # the reset is for the serving run its event starts
        self.start(SERVE, Way.ASSET)
        wait(serving)

    def _published(self, way: Way) -> str:
        """The model kfp_train's ``way`` run published; a test model when that run failed (reported there)."""
        event = self.events.get(way)
        return event["extra"]["model_uri"] if event else f"file://{self.stand.models.v2}"

    # ----- one (DAG, way) ----------------------------------------------------------------------
    def start(self, dag_id: str, way: Way, *, model_uri: str | None = None, reset: bool = False) -> None:
        """Start ``dag_id`` the given way, wait for the run's end, check what it did; never raises.

        :param model_uri: the model a kfp_serve run must roll out (its conf, or what it should find).
        :param reset: first put ``iris`` back on a test model, so this run's rollout is a real one.
        """
        out = self.outcomes[(dag_id, way)]
        api = self._api()
        try:
            if reset:
                effects.reset_isvc(self.stand.kube, DEFAULT_ISVC, self.stand.models)
            conf = self._conf(dag_id, way, model_uri)
            out.run_id = self._trigger(api, dag_id, way, conf)
            if dag_id == RELEASE:
                approve(self.stand.stack, api, dag_id, out.run_id, RUN_TIMEOUT)
            out.state = finished(api, dag_id, out.run_id, RUN_TIMEOUT)
            self._timing(api, out)
            if out.state != "success":
                raise AssertionError(f"the run ended {out.state}:\n{explain(api, dag_id, out.run_id)}")
            out.effect = self.checks[dag_id](api, out, conf, model_uri)
        except Exception as exc:
            out.problem = "".join(traceback.format_exception_only(exc)).strip()
            if out.run_id:  # the run still ends before the next one may touch the same InferenceService
                with contextlib.suppress(Exception):
                    out.state = finished(api, dag_id, out.run_id, RUN_TIMEOUT)
                    self._timing(api, out)
        finally:
            api.close()

    def _api(self) -> AirflowApiClient:
        """A client per thread: the runs are waited for concurrently."""
        return AirflowApiClient(self.stand.stack.base_url, self.stand.stack.passwords)

    def _conf(self, dag_id: str, way: Way, model_uri: str | None) -> dict[str, Any]:
        if way not in CONF_WAYS:
            return {}
        conf: dict[str, Any] = {"model_root": str(self.stand.roots / f"{dag_id}-{way.slug}")}
        if dag_id != TRAIN:
            conf["inference_service"] = OWN_ISVCS[(dag_id, way)]
        if dag_id == SERVE:
            del conf["model_root"]
            conf["model_uri"] = model_uri
        return conf

    def _trigger(self, api: AirflowApiClient, dag_id: str, way: Way, conf: dict[str, Any]) -> str:
        starter = self.stand.starter
        if way is Way.UI:
            return starter.ui(api, dag_id)
        if way is Way.REST_DATE:
            return starter.rest(api, dag_id, conf, LOGICAL_DATE)
        if way is Way.REST_NULL:
            return starter.rest(api, dag_id, conf, None)
        if way is Way.CLI:
            return starter.cli(dag_id, conf)
        run_type = "scheduled" if way is Way.SCHEDULE else "asset_triggered"
        return starter.scheduled_run(api, dag_id, run_type, RUN_TIMEOUT)

    @staticmethod
    def _timing(api: AirflowApiClient, out: Outcome) -> None:
        run = api.dag_run(out.dag_id, out.run_id)
        if run["end_date"] and run["queued_at"]:
            ended, queued = datetime.fromisoformat(run["end_date"]), datetime.fromisoformat(run["queued_at"])
            out.seconds = (ended - queued).total_seconds()
        out.tries = max((ti["try_number"] or 0) for ti in api.task_instances(out.dag_id, out.run_id))

    # ----- what each DAG's run must have done ----------------------------------------------------
    def _root(self, conf: dict[str, Any]) -> str:
        return conf.get("model_root", DEFAULT_ROOT)

    def _check_train(self, api: AirflowApiClient, out: Outcome, conf: dict[str, Any], _: str | None) -> str:
        model_dir = effects.trained_model_dir(self.stand.kfp, TRAIN, out.run_id, TASKS[TRAIN], self._root(conf))
        event = effects.model_event(api, out.run_id, model_dir)
        self.events[out.way] = event
        return f"KFP run SUCCEEDED; event {event['id']} names {model_dir}"

    def _check_both(self, api: AirflowApiClient, out: Outcome, conf: dict[str, Any], _: str | None) -> str:
        model_dir = effects.trained_model_dir(self.stand.kfp, BOTH, out.run_id, TASKS[BOTH], self._root(conf))
        result = api.xcom(BOTH, out.run_id, "serve_iris")
        if (result["outcome"], result["storage_uri"]) != ("promoted", model_dir):
            raise AssertionError(f"serve_iris did not promote {model_dir}: {result}")
        isvc = conf.get("inference_service", DEFAULT_ISVC)
        return "KFP run SUCCEEDED; " + effects.serving(self.stand.kube, isvc, model_dir, result["new_revision"])

    def _check_serve(self, api: AirflowApiClient, out: Outcome, conf: dict[str, Any], model_uri: str | None) -> str:
        if out.way is Way.ASSET:
            event = self.events.get(Way.CLI)
            if event is None:
                raise AssertionError("kfp_train's CLI run recorded no event to compare with")
            consumed = api.get(f"/api/v2/dags/{SERVE}/dagRuns/{out.run_id}/upstreamAssetEvents").json()
            # Events recorded while kfp_serve was paused are listed too, as not triggering this run.
            triggering = [
                e["id"] for e in consumed["asset_events"]
                if any(r["run_id"] == out.run_id and r["triggering"] for r in e["created_dagruns"])
            ]
            if triggering != [event["id"]]:
                raise AssertionError(f"the asset run was triggered by events {triggering}, not {event['id']}: {consumed}")
            model_uri = event["extra"]["model_uri"]
        result = api.xcom(SERVE, out.run_id, "serve_iris")
        if (result["outcome"], result["storage_uri"]) != ("promoted", model_uri):
            raise AssertionError(f"serve_iris did not promote {model_uri}: {result}")
        isvc = conf.get("inference_service", DEFAULT_ISVC)
        return effects.serving(self.stand.kube, isvc, model_uri or "", result["new_revision"])

    def _check_release(self, api: AirflowApiClient, out: Outcome, conf: dict[str, Any], _: str | None) -> str:
        model_dir = effects.trained_model_dir(self.stand.kfp, RELEASE, out.run_id, TASKS[RELEASE], self._root(conf))
        states = {ti["task_id"]: ti["state"] for ti in api.task_instances(RELEASE, out.run_id)}
        expected = {"train": "success", "canary": "success", "approve": "success", "promote": "success",
                    "rollback": "skipped", "outcome": "success"}
        if states != expected:
            raise AssertionError(f"task states {states}, expected {expected}")
        canary = api.xcom(RELEASE, out.run_id, "canary")
        promote = api.xcom(RELEASE, out.run_id, "promote")
        if canary["outcome"] != "canary" or (promote["outcome"], promote["target_uri"]) != ("promoted", model_dir):
            raise AssertionError(f"canary {canary}, promote {promote}: expected a canary of {model_dir}, promoted")
        isvc = conf.get("inference_service", DEFAULT_ISVC)
        return "KFP run SUCCEEDED; approved; " + effects.serving(self.stand.kube, isvc, model_dir, promote["new_revision"])

    # ----- the closing note ------------------------------------------------------------------
    def table(self) -> str:
        ways = list(Way)
        width = max(len(dag) for dag in WAYS)
        cells = {
            (dag, way): (self.outcomes[(dag, way)].cell() if (dag, way) in self.outcomes
                         else NOT_APPLICABLE.get((dag, way), "--"))
            for dag in WAYS for way in ways
        }
        widths = {way: max(len(way.value), *(len(cells[(dag, way)]) for dag in WAYS)) for way in ways}
        lines = [" | ".join([f"{'DAG':<{width}}", *(f"{way.value:<{widths[way]}}" for way in ways)])]
        lines.append("-|-".join(["-" * width, *("-" * widths[way] for way in ways)]))
        for dag in WAYS:
            lines.append(" | ".join([f"{dag:<{width}}", *(f"{cells[(dag, way)]:<{widths[way]}}" for way in ways)]))
        problems = [f"{o.dag_id} x {o.way.value}: {o.problem}" for o in self.outcomes.values() if o.problem]
        return "\n".join([*lines, *(["", "Problems:", *problems] if problems else [])])


@pytest.fixture(scope="module")
def campaign(stand: Stand) -> Campaign:
    began = time.monotonic()
    campaign = Campaign(stand)
    campaign.run()
    print(f"\nEvery DAG x every way, on one stack ({time.monotonic() - began:.0f}s for all runs):")
    print(campaign.table())
    return campaign


CASES = [(dag, way) for dag, ways in WAYS.items() for way in ways]


@pytest.mark.parametrize(("dag_id", "way"), CASES, ids=[f"{dag}-{way.slug}" for dag, way in CASES])
def test_dag_started_this_way_succeeds_with_its_effect(campaign: Campaign, dag_id: str, way: Way) -> None:
    out = campaign.outcomes[(dag_id, way)]
    assert (out.state, out.problem) == ("success", ""), f"{dag_id} started by {way.value} ({out.run_id}): {out.problem}"
    assert out.effect


def test_no_run_was_created_that_no_way_asked_for(campaign: Campaign, stand: Stand) -> None:
    """One run per way: in particular kfp_train's events while kfp_serve was paused started no serving run."""
    for dag_id, ways in WAYS.items():
        found = {run["dag_run_id"]: run["run_type"] for run in runs(stand.stack, dag_id)}
        started = {campaign.outcomes[(dag_id, way)].run_id: way for way in ways}
        assert sorted(found) == sorted(started), dag_id
        for run_id, way in started.items():
            expected = {Way.SCHEDULE: "scheduled", Way.ASSET: "asset_triggered"}.get(way, "manual")
            assert found[run_id] == expected, (dag_id, way, found)
