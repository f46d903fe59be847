"""Train (KFP) then roll the trained model out (KServe), for the OpenLineage tests.

Everything the run needs comes from its conf (``airflow dags test --conf`` or a triggered run): the
compiled pipeline, where the model goes, the InferenceService, the connections and whether the
tasks defer. The rollout serves exactly the URI the training task returned.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.operators.kserve import KServeRolloutOperator

for dag_id, deferrable in (("lineage_train_serve", False), ("lineage_train_serve_deferred", True)):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
        catchup=False,
        tags=["kfp", "kserve", "lineage", "test"],
        params={
            "pipeline_file": Param("", type="string"),
            "model_path": Param("", type="string"),
            "isvc": Param("", type="string"),
        },
    ) as dag:
        train = KfpRunOperator(
            task_id="train",
            pipeline="{{ params.pipeline_file }}",
            experiment="lineage",
            params={"model_dir": "{{ params.model_path }}", "seed": 7},
            model_uri="file://{{ params.model_path }}",
            kfp_conn_id="kfp_lineage",
            deferrable=deferrable,
            poll_interval=1,
        )
        serve = KServeRolloutOperator(
            task_id="serve",
            inference_service="{{ params.isvc }}",
            namespace="default",
            storage_uri="{{ ti.xcom_pull(task_ids='train')['model_uri'] }}",
            canary_traffic_percent=20,
            kubernetes_conn_id="kube_lineage",
            deferrable=deferrable,
            timeout=180,
        )
        train >> serve
    globals()[dag_id] = dag
