"""``kfp-bridge compile`` (kfp_bridge.utils.compiling) on temporary pipelines with the real compiler."""

from __future__ import annotations

import sys
import textwrap

import pytest

from kfp_bridge.cli import main
from kfp_bridge.utils.compiling import compile_sources

SOURCE = """
from kfp import dsl


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def add(a: float, b: float) -> float:
    return a + b


@dsl.pipeline(name="adder")
def adder(a: float = A_DEFAULT, b: float = 2.0) -> float:
    return add(a=a, b=b).output
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipelines").mkdir()
    return tmp_path


def write_source(workdir, a_default: str = "1.0", name: str = "adder.py"):
    path = workdir / "pipelines" / name
    path.write_text(textwrap.dedent(SOURCE.replace("A_DEFAULT", a_default)))
    return path


def test_compile_check_edit_check(workdir, capsys):
    source = write_source(workdir)
    target = workdir / "pipelines" / "adder.yaml"

    assert compile_sources(["pipelines/adder.py"]) == 0
    assert target.is_file()
    assert "pipelineInfo:\n  name: adder" in target.read_text()
    assert "compiled: pipelines/adder.py -> pipelines/adder.yaml" in capsys.readouterr().out

    assert compile_sources(["pipelines/adder.py"], check=True) == 0
    assert "up to date: pipelines/adder.yaml" in capsys.readouterr().out

    write_source(workdir, a_default="5.0")
    before = target.read_bytes()
    assert compile_sources(["pipelines/adder.py"], check=True) == 1
    out = capsys.readouterr().out
    assert "stale: pipelines/adder.yaml (run: kfp-bridge compile pipelines/adder.py)" in out
    assert target.read_bytes() == before, "--check must never write the committed file"
    assert source.exists()

    assert compile_sources(["pipelines/adder.py"]) == 0
    assert compile_sources(["pipelines/adder.py"], check=True) == 0
    assert "defaultValue: 5.0" in target.read_text()


def test_check_reports_missing_yaml(workdir, capsys):
    write_source(workdir)
    assert compile_sources(["pipelines/adder.py"], check=True) == 1
    assert (
        "stale: pipelines/adder.yaml (missing; run: kfp-bridge compile pipelines/adder.py)"
        in capsys.readouterr().out
    )
    assert not (workdir / "pipelines" / "adder.yaml").exists()


def test_only_sdk_version_differs_is_not_stale(workdir):
    write_source(workdir)
    assert compile_sources(["pipelines/adder.py"]) == 0
    target = workdir / "pipelines" / "adder.yaml"
    text = target.read_text()
    assert "sdkVersion: kfp-" in text
    target.write_text(text.replace("sdkVersion: kfp-", "sdkVersion: kfp-0.0.0-was-"))
    assert compile_sources(["pipelines/adder.py"], check=True) == 0


def test_compiler_output_is_deterministic(workdir):
    write_source(workdir)
    assert compile_sources(["pipelines/adder.py"]) == 0
    first = (workdir / "pipelines" / "adder.yaml").read_bytes()
    assert compile_sources(["pipelines/adder.py"]) == 0
    assert (workdir / "pipelines" / "adder.yaml").read_bytes() == first


def test_file_with_function_and_module_form(workdir, capsys, monkeypatch):
    write_source(workdir)
    assert compile_sources(["pipelines/adder.py:adder"]) == 0
    # module:function resolves from the current directory, like `python -m`. A unique package name:
    # pytest puts test folders on sys.path, and one of them holds an unrelated pipelines.py.
    package = workdir / "kfpb_compile_case"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_source(workdir).rename(package / "adder.py")
    monkeypatch.syspath_prepend(str(workdir))
    try:
        assert compile_sources(["kfpb_compile_case.adder:adder"]) == 0
        assert compile_sources(["kfpb_compile_case.adder:adder"], check=True) == 0
    finally:
        for name in ("kfpb_compile_case.adder", "kfpb_compile_case"):
            sys.modules.pop(name, None)
    assert "up to date: kfpb_compile_case/adder.yaml" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("pipelines/missing.py", "does not exist"),
        ("pipelines/adder.yaml", "already compiled; pass its pipeline source"),
        ("pipelines/adder.py:nope", "has no function 'nope'"),
        ("not a source", "is not a compiled pipeline"),
        ("kb_no_such_module:fn", "not found on sys.path"),
    ],
)
def test_bad_source_exits_2_with_a_clear_error(workdir, capsys, source, expected):
    write_source(workdir)
    (workdir / "pipelines" / "adder.yaml").write_text("x: 1\n")
    assert compile_sources([source], check=True) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {source}: ")
    assert expected in err


def test_broken_source_exits_2_and_leaves_the_yaml_alone(workdir, capsys):
    write_source(workdir)
    assert compile_sources(["pipelines/adder.py"]) == 0
    target = workdir / "pipelines" / "adder.yaml"
    before = target.read_bytes()
    (workdir / "pipelines" / "adder.py").write_text("from kfp import dsl\nraise RuntimeError('boom')\n")
    assert compile_sources(["pipelines/adder.py"]) == 2
    assert "RuntimeError: boom" in capsys.readouterr().err
    assert target.read_bytes() == before
    assert sorted(p.name for p in (workdir / "pipelines").iterdir()) == ["adder.py", "adder.yaml"]


def test_bad_source_wins_over_stale(workdir, capsys):
    write_source(workdir)
    assert compile_sources(["pipelines/adder.py", "pipelines/missing.py"], check=True) == 2
    captured = capsys.readouterr()
    assert "stale: pipelines/adder.yaml" in captured.out
    assert "error: pipelines/missing.py" in captured.err


def test_two_sources_for_one_yaml_are_refused(workdir, capsys):
    write_source(workdir)
    assert compile_sources(["pipelines/adder.py", "pipelines/adder.py:adder"]) == 2
    assert "both compile to pipelines/adder.yaml" in capsys.readouterr().err


def test_cli_wiring(workdir, capsys):
    write_source(workdir)
    assert main(["compile", "pipelines/adder.py"]) == 0
    assert main(["compile", "--check", "pipelines/adder.py"]) == 0
    write_source(workdir, a_default="3.0")
    assert main(["compile", "--check", "pipelines/adder.py"]) == 1
    assert "stale: pipelines/adder.yaml" in capsys.readouterr().out
