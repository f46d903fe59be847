"""``LazyLinks``: the operators' extra links are built when read, and serialize as before."""

from __future__ import annotations

import subprocess
import sys

import pendulum
import pytest
from airflow.sdk import DAG, BaseOperatorLink
from airflow.serialization.serialized_objects import DagSerialization

from kfp_bridge.links import INFERENCE_SERVICE_LINK, KFP_RUN_LINK, LazyLinks, persist_url
from kfp_bridge.links.kfp import KfpRunLink
from kfp_bridge.links.kserve import InferenceServiceLink
from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.operators.kserve import KServeRolloutOperator
from kfp_bridge.operators.kserve_release import KServePromoteOperator, KServeRollbackOperator
from kfp_bridge.sensors.kfp import KfpRunSensor


def test_links_are_built_once_on_first_read_and_read_alike_from_the_class_and_an_instance():
    class Owner:
        operator_extra_links = LazyLinks("kfp_bridge.links.kfp.KfpRunLink", "kfp_bridge.links.kserve.InferenceServiceLink")

    links = Owner.operator_extra_links
    assert [type(link) for link in links] == [KfpRunLink, InferenceServiceLink]
    assert all(isinstance(link, BaseOperatorLink) for link in links)
    assert Owner().operator_extra_links is links


@pytest.mark.parametrize(("path", "link"), [(KFP_RUN_LINK, KfpRunLink), (INFERENCE_SERVICE_LINK, InferenceServiceLink)])
def test_persist_url_pushes_the_url_under_the_links_own_xcom_key(path, link):
    pushed = []

    class _Ti:
        def xcom_push(self, *, key, value):
            pushed.append((key, value))

    persist_url({"ti": _Ti()}, path, "http://ui.example/x")
    assert pushed == [(link.key, "http://ui.example/x")]


def test_a_wrong_path_fails_when_read_naming_the_module():
    class Owner:
        operator_extra_links = LazyLinks("kfp_bridge.links.nowhere.Link")

    with pytest.raises(ModuleNotFoundError, match="kfp_bridge.links.nowhere"):
        Owner.operator_extra_links  # noqa: B018


@pytest.mark.parametrize(
    ("operator", "link"),
    [
        (KfpRunOperator, KfpRunLink),
        (KfpRunSensor, KfpRunLink),
        (KServeRolloutOperator, InferenceServiceLink),
        (KServePromoteOperator, InferenceServiceLink),
        (KServeRollbackOperator, InferenceServiceLink),
    ],
)
def test_each_operator_declares_its_link(operator, link):
    assert [type(x) for x in operator.operator_extra_links] == [link]


def test_parsing_a_dag_file_does_not_import_the_link_classes():
    # What LazyLinks is for: BaseOperatorLink's module is Airflow's serializer's cost, not the parse's.
    code = (
        "import sys, airflow.sdk\n"
        "import kfp_bridge.operators.kfp, kfp_bridge.sensors.kfp, kfp_bridge.operators.kserve\n"
        "print(sorted(m for m in ('airflow.sdk.bases.operatorlink', 'kfp_bridge.links.kfp', 'kfp_bridge.links.kserve')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_serialized_dag_carries_the_links_of_plain_and_mapped_tasks():
    with DAG("links", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        KfpRunOperator(task_id="train", pipeline="/p.yaml")
        KfpRunOperator.partial(task_id="mapped", pipeline="/p.yaml").expand(run_name=["a", "b"])
        KfpRunSensor(task_id="wait", run_id="r")
        KServeRolloutOperator(task_id="roll", inference_service="iris", storage_uri="gs://m/1")

    tasks = [t.get("__var", t) for t in DagSerialization.to_dict(dag)["dag"]["tasks"]]
    links = {t["task_id"]: t.get("_operator_extra_links") for t in tasks}
    assert links == {
        "train": {"Kubeflow run": "kfp_run_url"},
        "mapped": {"Kubeflow run": "kfp_run_url"},
        "wait": {"Kubeflow run": "kfp_run_url"},
        "roll": {"InferenceService": "kserve_isvc_url"},
    }
