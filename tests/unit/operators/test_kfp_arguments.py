"""KfpRunOperator / KfpRunSensor check every argument after rendering, before any side effect (issue 13 item 5).

The catalogue (tests/security/test_bad_input_catalogue.py) runs the operator against the stand-in and
proves nothing reached KFP; these pin each rule and its message.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from kfp_bridge.operators.kfp import EXPERIMENT_NAME_MAX, RUN_NAME_MAX, KfpArgumentError, KfpRunOperator
from kfp_bridge.sensors.kfp import KfpRunSensor


def operator(**kwargs):
    return KfpRunOperator(task_id="t", pipeline=kwargs.pop("pipeline", "p.yaml"), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "argument", "shown"),
    [
        ({"timeout": 0}, "timeout", "0"),
        ({"timeout": -5}, "timeout", "-5"),
        ({"timeout": timedelta(seconds=-1)}, "timeout", "timedelta"),
        ({"timeout": "600"}, "timeout", "'600'"),
        ({"timeout": float("nan")}, "timeout", "nan"),
        ({"poll_interval": 0}, "poll_interval", "0"),
        ({"poll_interval": True}, "poll_interval", "True"),
        ({"enable_caching": "false"}, "enable_caching", "'false'"),
        ({"enable_caching": 0}, "enable_caching", "0"),
        ({"deferrable": "yes"}, "deferrable", "'yes'"),
        ({"namespace": ""}, "namespace", "''"),
        ({"namespace": "Team_A"}, "namespace", "'Team_A'"),
        ({"namespace": "a" * 64}, "namespace", "aaaa"),
        ({"experiment": ""}, "experiment", "''"),
        ({"experiment": "   "}, "experiment", "'   '"),
        ({"experiment": "e" * (EXPERIMENT_NAME_MAX + 1)}, "experiment", "at most 128"),
        ({"run_name": "r" * (RUN_NAME_MAX + 1)}, "run_name", "at most 255"),
        ({"run_name": "two\nlines"}, "run_name", "control characters"),
        ({"service_account": "Pipeline Runner"}, "service_account", "'Pipeline Runner'"),
        ({"service_account": "../default"}, "service_account", "DNS-1123"),
        ({"on_rerun": "retry_all"}, "on_rerun", "'retry_all'"),
        ({"kfp_conn_id": ""}, "kfp_conn_id", "''"),
        ({"kubernetes_conn_id": ""}, "kubernetes_conn_id", "''"),
        ({"pipeline": ""}, "pipeline", "''"),
    ],
)
def test_bad_argument_names_itself_the_form_and_the_value(kwargs, argument, shown):
    with pytest.raises(KfpArgumentError) as err:
        operator(**kwargs)._check_arguments()
    message = str(err.value)
    assert f"'{argument}'" in message
    assert "must be" in message
    assert shown in message


def test_string_false_for_enable_caching_names_the_fix():
    with pytest.raises(KfpArgumentError, match="'false' would be read as true"):
        operator(enable_caching="false")._check_arguments()


def test_empty_namespace_names_the_fallback_it_prevents():
    with pytest.raises(KfpArgumentError, match="rendered to nothing"):
        operator(namespace="")._check_arguments()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"timeout": 0.5, "poll_interval": 0.1, "enable_caching": False, "deferrable": True},
        {"timeout": timedelta(hours=1), "namespace": "team-a", "service_account": "pipeline-runner.v2"},
        {"experiment": "e" * EXPERIMENT_NAME_MAX, "run_name": "ünïcode run ✓ " + "r" * 200, "on_rerun": "new_run"},
    ],
)
def test_good_arguments_pass(kwargs):
    operator(**kwargs)._check_arguments()


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"run_id": "../../apis/v2beta1/runs"}, "run_id"),
        ({"run_id": "abc?filter=x"}, "run_id"),
        ({"run_id": " "}, "run id"),
        ({"kfp_conn_id": ""}, "kfp_conn_id"),
        ({"deferrable": "false"}, "deferrable"),
    ],
)
def test_sensor_bad_arguments(kwargs, argument):
    sensor = KfpRunSensor(task_id="s", **{"run_id": "5f0c1d2e-0000-4000-8000-000000000001", **kwargs})
    with pytest.raises(KfpArgumentError, match=argument):
        sensor._check_run_id()


def test_sensor_good_arguments():
    KfpRunSensor(task_id="s", run_id="5f0c1d2e-0000-4000-8000-000000000001", poke_interval=1, timeout=60)._check_run_id()


def test_yaml_alias_bomb_is_refused_before_parsing(tmp_path):
    from kfp_bridge.operators.kfp import _refuse_yaml_aliases

    lines = ['    a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"    a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text("pipelineInfo:\n  name: x\nroot: {}\ndeploymentSpec:\n  bomb:\n" + "\n".join(lines) + "\n")
    with pytest.raises(KfpArgumentError, match=r"'pipeline'.*YAML alias \(\*a0 at line 7\)"):
        _refuse_yaml_aliases(str(bomb), None)


def test_compiled_pipeline_without_aliases_passes(tmp_path):
    from kfp_bridge.operators.kfp import _refuse_yaml_aliases

    plain = tmp_path / "p.yaml"
    plain.write_text("pipelineInfo:\n  name: x\nroot:\n  dag: {tasks: {}}\n")
    _refuse_yaml_aliases("p.yaml", str(tmp_path))


@pytest.mark.parametrize("name", ["run\u202egpj.exe", "zero\u200bwidth", "line\u2028sep", "c1\x85control", "\ufeffbom"])
def test_invisible_and_bidi_characters_in_names_are_refused(name):
    with pytest.raises(KfpArgumentError, match="'run_name'.*control characters"):
        operator(run_name=name)._check_arguments()
