"""The KFP stand-in's pip bootstrap (kfp_bridge/local/kfp/bootstrap.py), offline.

The commands come from the SDK itself (kfp/dsl/component_factory.py,
``_get_packages_to_install_command``) and kfp.local (kfp/local/subprocess_task_handler.py,
``replace_python_executable``); packages come from a wheel built here behind a ``file:`` index,
so nothing reaches the network.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from kfp.dsl import component_factory
from kfp.local import subprocess_task_handler

from kfp_bridge.local.kfp import bootstrap
from kfp_bridge.local.kfp.bootstrap import Environments, PipInstall

# Not "kfp…": the SDK skips its kfp install when a requested package name starts with "kfp".
TINY = "tinybridge"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PEP 503 ``file:`` index with one pure-python wheel (tinybridge 0.1, ``VALUE = 42``)."""
    root = tmp_path_factory.mktemp("index")
    dist = "tinybridge-0.1.dist-info"
    files = {"tinybridge/__init__.py": "VALUE = 42\n",
             f"{dist}/METADATA": "Metadata-Version: 2.1\nName: tinybridge\nVersion: 0.1\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    wheel = root / "tinybridge-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(f"{dist}/RECORD", "".join(f"{name},,\n" for name in [*files, f"{dist}/RECORD"]))
    (root / "simple" / TINY).mkdir(parents=True)
    (root / "simple" / TINY / "index.html").write_text(f'<a href="../../{wheel.name}">{wheel.name}</a>')
    return (root / "simple").as_uri()


def sdk_bootstrap(packages: list[str], index_urls: list[str] | None = None) -> str:
    """The ``sh -c`` script a default ``@dsl.component`` starts with."""
    command = component_factory._get_packages_to_install_command(packages_to_install=packages,
                                                                 pip_index_urls=index_urls)
    assert command[:2] == ["sh", "-c"]
    return command[2]


def pip_installs(script: str) -> list[list[str]]:
    """The argument lists after ``python3 -m pip install`` in an SDK bootstrap script."""
    words = shlex.split(script.replace("&&", " && "))
    out: list[list[str]] = []
    for i in range(len(words) - 3):
        if words[i:i + 4] == ["python3", "-m", "pip", "install"]:
            rest = words[i + 4:]
            out.append(rest[: rest.index("&&")] if "&&" in rest else rest)
    return out


# ----- parsing and classification -----


def test_the_sdk_bootstrap_parses_into_requirements_and_options():
    first, second = pip_installs(sdk_bootstrap(["humanize==4.*", "toolz"], ["https://a/simple", "https://b/simple"]))
    user = bootstrap.parse_pip_install(first)
    assert user.requirements == ("humanize==4.*", "toolz")
    assert user.options == ("--index-url", "https://a/simple", "--extra-index-url", "https://b/simple",
                            "--trusted-host", "https://a/simple", "--trusted-host", "https://b/simple")
    assert user.quiet
    kfp_line = bootstrap.parse_pip_install(second)
    assert kfp_line.requirements[0].startswith("kfp==2.")
    assert "--no-deps" in kfp_line.options
    # Everything on the SDK's kfp line is served or skipped: it installs nothing.
    assert [bootstrap.classify(r)[0] for r in kfp_line.requirements] == ["served", "skip"]


@pytest.mark.parametrize(("requirement", "verdict"), [
    ("kfp==2.17.3", "served"),
    ("kfp==2.7.0", "served"),  # compiled with an older 2.x SDK: the 2.x runtime runs it the same way
    ("kfp>=2,<3", "served"),
    ("kfp", "served"),
    ("kfp-pipeline-spec", "install"),  # the SDK installs kfp --no-deps; listed by the user, pip installs it
    ("kfp==1.8.22", "install"),  # a v1 SDK is not what the stand-in runs: installed, as KFP would
    ('typing-extensions>=3.7.4,<5; python_version<"3.9"', "skip"),
    ("humanize", "install"),
    ("git+https://example.com/x.git", "install"),
    ("./local/wheel.whl", "install"),
])
def test_classify(requirement: str, verdict: str):
    assert bootstrap.classify(requirement)[0] == verdict


def test_uv_spelling_of_pip_options():
    install = bootstrap.parse_pip_install(
        ["-q", "--no-warn-script-location", "-i", "https://i/simple", "--trusted-host=h.example", "--pre", "-U",
         "-r", "reqs.txt", "--trusted-host", "file:///srv/simple", "--root-user-action", "ignore", "pkg"])
    assert install.uv_args() == ["--index-url", "https://i/simple", "--allow-insecure-host", "h.example",
                                 "--prerelease", "allow", "--upgrade", "-r", "reqs.txt", "pkg", "--quiet"]
    assert install.pip_args() == ["--index-url", "https://i/simple", "--trusted-host", "h.example", "--pre",
                                  "--upgrade", "--requirement", "reqs.txt", "--trusted-host", "file:///srv/simple",
                                  "pkg", "--quiet"]
    assert install.needs_install()
    assert not PipInstall((), ("--no-deps",)).needs_install()


def test_the_key_ignores_requirement_order_but_not_options(tmp_path: Path):
    envs = Environments(tmp_path, uv="uv")
    assert envs.key([PipInstall(("b", "a"))]) == envs.key([PipInstall(("a", "b"))])
    assert envs.key([PipInstall(("a",))]) != envs.key([PipInstall(("a",), ("--index-url", "https://x/simple"))])
    assert envs.key([PipInstall(("humanize",))]).startswith("humanize-")


def test_executor_input_numbers_as_the_launcher_writes_them():
    executor_input = {"inputs": {"parameterValues": {"numbers": [1.0, 4.0, 2.5], "cfg": {"n": 3.0}, "big": 1e22}}}
    command = ["sh", "-c", "x", "--executor_input", json.dumps(executor_input), "--function_to_execute", "f"]
    out = json.loads(bootstrap.as_launcher_writes_it(command)[4])
    assert out["inputs"]["parameterValues"] == {"numbers": [1, 4, 2.5], "cfg": {"n": 3}, "big": 1e22}
    assert isinstance(out["inputs"]["parameterValues"]["numbers"][0], int)


def test_container_components_are_named_with_what_they_need():
    lightweight = ["sh", "-c", "...", "sh", "-ec", "python3 -m kfp.dsl.executor_main ..."]
    assert bootstrap.container_needs(lightweight, "python:3.11") is None
    message = bootstrap.container_needs(["echo", "hello"], "alpine")
    assert message is not None and "needs a container engine" in message and "'alpine'" in message
    containerized = bootstrap.container_needs(["python3", "-m", "kfp.dsl.executor_main"], "reg/x:v1")
    assert containerized is not None and "Containerized Python component" in containerized


# ----- environments -----


def _uses(env_python: Path) -> list[dict]:
    return [json.loads(line) for line in (env_python.parent.parent / bootstrap.USES_FILE).read_text().splitlines()]


@pytest.mark.skipif(bootstrap.find_uv() is None, reason="uv is installed by make (.tools/bin/uv)")
def test_uv_environment_is_created_once_then_reused_and_sees_the_kfp_runtime(tmp_path: Path, index: str):
    envs = Environments(tmp_path / "venvs", uv=bootstrap.find_uv())
    wanted = [PipInstall((TINY,), ("--index-url", index))]
    python, created, _ = envs.ensure(wanted, "run-1")
    assert created
    again, created_again, seconds = envs.ensure(wanted, "run-2")
    assert (again, created_again) == (python, False) and seconds < 1.0
    assert [(u["run_id"], u["created"]) for u in _uses(python)] == [("run-1", True), ("run-2", False)]
    probe = ("import importlib.util as u, tinybridge, kfp; "
             "print(tinybridge.VALUE, kfp.__version__, u.find_spec('yaml'), u.find_spec('airflow'))")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "_KFP_RUNTIME": "true"}).stdout.split()
    # kfp from the stand-in, nothing else of it (pyyaml, airflow are there but not in an image).
    assert out == ["42", out[1], "None", "None"] and out[1].startswith("2.")
    # The stand-in's own environment got nothing.
    assert subprocess.run([sys.executable, "-c", "import tinybridge"], capture_output=True).returncode != 0


@pytest.mark.skipif(bootstrap.find_uv() is None, reason="uv is installed by make (.tools/bin/uv)")
def test_two_processes_asking_at_once_build_one_environment(tmp_path: Path, index: str):
    script = ("import sys; from pathlib import Path; from kfp_bridge.local.kfp import bootstrap as b; "
              f"p, c, s = b.Environments(Path({str(tmp_path / 'venvs')!r}), uv=b.find_uv())"
              f".ensure([b.PipInstall(({TINY!r},), ('--index-url', {index!r}))], sys.argv[1]); print(p)")
    procs = [subprocess.Popen([sys.executable, "-c", script, f"run-{i}"], stdout=subprocess.PIPE, text=True)
             for i in range(3)]
    pythons = {proc.communicate(timeout=120)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(pythons) == 1
    uses = _uses(Path(pythons.pop()))
    assert sorted(u["run_id"] for u in uses) == ["run-0", "run-1", "run-2"]
    assert sum(u["created"] for u in uses) == 1


def test_failed_install_leaves_no_environment(tmp_path: Path, index: str, capfd: pytest.CaptureFixture[str]):
    envs = Environments(tmp_path / "venvs", uv=bootstrap.find_uv())
    wanted = [PipInstall(("tinybridge-missing",), ("--index-url", index))]
    with pytest.raises(bootstrap.InstallFailed):
        envs.ensure(wanted)
    assert not (tmp_path / "venvs" / envs.key(wanted)).exists()
    assert "tinybridge-missing" in capfd.readouterr().err


def test_without_uv_it_falls_back_to_venv_and_pip(tmp_path: Path, index: str):
    envs = Environments(tmp_path / "venvs", uv=None)
    python, created, _ = envs.ensure([PipInstall((TINY,), ("--index-url", index))])
    assert created
    assert (python.parent / "pip").exists()
    out = subprocess.run([str(python), "-c", "import tinybridge; print(tinybridge.VALUE)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "42"


# ----- the shim, driven by the SDK's own bootstrap script -----


def run_component_script(tmp_path: Path, script: str, path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess:
    """``sh -c SCRIPT`` after kfp.local's python3 substitution, with the stand-in's shim as python3."""
    with bootstrap.task_python(tmp_path / "shims", tmp_path / "venvs", "run-x") as python3:
        command = subprocess_task_handler.replace_python_executable(["sh", "-c", script], python3)
        # No pip on PATH: the SDK script then takes its ``python3 -m ensurepip`` branch first.
        return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PATH": path})


def test_sdk_bootstrap_with_packages_runs_the_component_on_the_cached_venv(tmp_path: Path, index: str):
    script = sdk_bootstrap([TINY], [index]).replace('"$0" "$@"', 'python3 -c "import tinybridge, sys; '
                                                    'print(tinybridge.VALUE, sys.prefix)"')
    result = run_component_script(tmp_path, script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "created environment tinybridge-" in result.stdout
    assert "served by the stand-in's own kfp runtime" in result.stdout
    value, prefix = result.stdout.strip().splitlines()[-1].split()
    assert value == "42" and Path(prefix).parent == tmp_path / "venvs"
    second = run_component_script(tmp_path, script)
    assert "reusing environment tinybridge-" in second.stdout
    assert not list((tmp_path / "shims").iterdir())  # each task's shim is gone after it


def test_sdk_bootstrap_without_packages_runs_on_a_kfp_only_environment(tmp_path: Path):
    """Like the image after ``pip install kfp --no-deps``: kfp imports, the stand-in's other packages do not."""
    probe = ("import sys, kfp.dsl.executor_main; print(sys.prefix); "
             "import yaml")  # pyyaml is in the stand-in's environment, not in a component's image
    script = sdk_bootstrap([]).replace('"$0" "$@"', f'_KFP_RUNTIME=true python3 -c "{probe}"')
    result = run_component_script(tmp_path, script)
    assert result.returncode != 0
    assert "No module named 'yaml'" in result.stdout + result.stderr
    prefix = Path(result.stdout.strip().splitlines()[-1])
    assert prefix.parent == tmp_path / "venvs" and prefix.name.startswith("kfp-only-")


def test_components_without_the_bootstrap_keep_the_stand_in_python(tmp_path: Path):
    """``install_kfp_package=False`` components were written for a prepared environment: this one."""
    result = run_component_script(tmp_path, 'python3 -c "import sys, yaml; print(sys.prefix)"')
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == sys.prefix
    assert not (tmp_path / "venvs").exists()


def test_unknown_package_fails_the_step_with_the_installers_message(tmp_path: Path, index: str):
    script = sdk_bootstrap(["tinybridge-missing"], [index]).replace('"$0" "$@"', "echo COMPONENT-RAN")
    result = run_component_script(tmp_path, script)
    assert result.returncode != 0
    assert "COMPONENT-RAN" not in result.stdout
    assert "could not install tinybridge-missing" in result.stderr
    assert "tinybridge-missing" in result.stderr.split("could not install")[0]  # uv's/pip's own message first


def test_pip_subcommands_other_than_install_are_refused_clearly(tmp_path: Path):
    result = run_component_script(tmp_path, "python3 -m pip freeze")
    assert result.returncode == 1
    assert "only run `pip install`" in result.stderr


def test_a_state_dir_with_spaces_still_gets_a_pasteable_shim(tmp_path: Path):
    with bootstrap.task_python(tmp_path / "my state" / "shims", tmp_path / "my state" / "venvs") as python3:
        assert " " not in python3
        command = subprocess_task_handler.replace_python_executable(["sh", "-c", "python3 -c 'print(7)'"], python3)
        assert subprocess.run(command, capture_output=True, text=True).stdout.strip() == "7"
