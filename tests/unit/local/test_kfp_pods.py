"""Executor/driver pod files the KFP stand-in writes for the Kubernetes stand-in.

Names, labels and annotations follow argo-workflows v4.0.5 ``workflow/util/pod_name.go`` and
``workflow/controller/workflowpod.go`` and KFP 2.17.0 ``backend/src/apiserver/template/v2_template.go``
(``pipeline/runid`` pod label).
"""

from __future__ import annotations

import json
import os

from kfp_bridge.local.kfp import argo_nodes
from kfp_bridge.local.kfp.pods import PodWriter, step_log_name

WF = "p-abcde"


def _node(name: str, template: str, phase: str, **extra) -> dict:
    return {"id": argo_nodes.node_id(WF, name), "name": name, "display_name": name.rsplit(".", 1)[-1],
            "template": template, "type": "Pod", "phase": phase, "started": 10.0, "finished": 0.0,
            "pod_name": argo_nodes.pod_name(WF, name, template), **extra}


def test_pods_are_written_with_argo_names_and_a_live_log_link(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    log = run_dir / "logs" / "attempt-1" / step_log_name("train")
    log.parent.mkdir(parents=True)
    log.write_text("epoch 1\n")
    doc = {"run_id": "r1", "namespace": "", "_workflow": WF, "created_at": 5.0,
           "_steps": {"train": {"state": "RUNNING", "start": 10.0, "attempt": 1}}}
    executor = _node(f"{WF}.root.train.executor", "system-container-impl", "Running", path="train", image="python:3.11")
    driver = _node(f"{WF}.root.train-driver", "system-container-driver", "Succeeded")
    skipped = {**executor, "name": f"{WF}.root.other.executor", "type": "Skipped", "phase": "Skipped"}
    writer = PodWriter(tmp_path / "pods")
    writer.write(doc, [executor, driver, skipped], run_dir)

    folder = tmp_path / "pods" / "kubeflow"  # single-user KFP runs in its own namespace
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(
        [f"{executor['pod_name']}.json", f"{driver['pod_name']}.json"])  # no pod for a skipped node
    pod = json.loads((folder / f"{executor['pod_name']}.json").read_text())
    assert pod["metadata"]["labels"]["pipeline/runid"] == "r1"
    assert pod["metadata"]["labels"]["workflows.argoproj.io/workflow"] == WF
    assert pod["metadata"]["labels"]["workflows.argoproj.io/completed"] == "false"
    assert pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"] == executor["id"]
    assert pod["metadata"]["annotations"]["workflows.argoproj.io/node-name"] == executor["name"]
    assert pod["spec"]["containers"][1] == {"name": "main", "image": "python:3.11"}
    assert pod["status"]["phase"] == "Running"
    main_log = folder / f"{executor['pod_name']}.main.log"
    log.write_text("epoch 1\nepoch 2\n")  # the link follows the step's log as it grows
    assert main_log.read_text() == "epoch 1\nepoch 2\n"

    # A retry reruns the step under the same pod name; the link moves to the new attempt's log.
    doc["_steps"]["train"]["attempt"] = 2
    writer.write(doc, [{**executor, "phase": "Failed"}], run_dir)
    assert os.readlink(main_log).endswith(f"attempt-2/{step_log_name('train')}")
    assert json.loads((folder / f"{executor['pod_name']}.json").read_text())["status"]["phase"] == "Failed"

    writer.prune({"r1"})
    assert len(list(folder.glob("*.json"))) == 2  # its run still exists
    writer.remove_run(doc)
    assert list(folder.glob("*")) == []
    writer.write({**doc, "run_id": "gone"}, [driver], run_dir)
    writer.prune({"r1"})
    assert list(folder.glob("*")) == []
