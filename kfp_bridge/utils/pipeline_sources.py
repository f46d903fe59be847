"""Find, load and compile KFP pipeline sources.

A pipeline is given as one string (the operator's ``pipeline`` argument, the CLI's sources):

* ``path/to/pipeline.yaml`` — a compiled pipeline, absolute or relative to the DAG file's folder;
* ``path/to/file.py`` or ``path/to/file.py:function`` — a pipeline source loaded by path (the
  file's folder is put on ``sys.path`` while it runs, like ``python file.py``), no package needed;
* ``package.module:function`` — a pipeline source imported from ``sys.path`` (Airflow puts the DAG
  folder there).

Without ``:function`` a source file must define exactly one ``@dsl.pipeline`` (or, with none, exactly
one ``@dsl.component``), as ``kfp dsl compile`` does; objects imported from other modules don't count.

DAG files import the operator at parse time, and parse time must never import kfp, so kfp is
imported inside the functions that need it. Compiled YAML is read by :mod:`.pipeline_specs`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import re
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Literal

from kfp_bridge.utils.pipeline_specs import (
    YAML_SUFFIXES,
    PipelineDocuments,
    PipelineSourceError,
    existing_pipeline_file,
    load_pipeline_documents,
)

if TYPE_CHECKING:
    from kfp.dsl.base_component import BaseComponent

__all__ = [
    "YAML_SUFFIXES",
    "PipelineSource",
    "PipelineSourceError",
    "compile_in_process",
    "compile_pipeline_function",
    "compile_pipeline_to_file",
    "load_pipeline",
    "load_pipeline_function",
    "load_pipeline_package",
    "resolve_pipeline_source",
]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_FUTURE_ANNOTATIONS = re.compile(r"^\s*from\s+__future__\s+import\s+.*\bannotations\b", re.MULTILINE)


# --------------------------------------------------------------------------------------------------
# Resolving a reference
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PipelineSource:
    """A resolved pipeline reference.

    :param kind: ``"yaml"`` (compiled), ``"file"`` (a .py loaded by path) or ``"module"`` (imported).
    :param reference: the string as the user gave it, for error messages.
    :param path: absolute path for ``yaml`` and ``file``; None for ``module``.
    :param module: dotted module name for ``module``.
    :param function: the named pipeline function, or None to pick the only one in a file.
    """

    kind: Literal["yaml", "file", "module"]
    reference: str
    path: str | None = None
    module: str | None = None
    function: str | None = None

    @property
    def needs_compile(self) -> bool:
        return self.kind != "yaml"


def resolve_pipeline_source(pipeline: str, dag_folder: str | None = None) -> PipelineSource:
    """Parse a pipeline reference and check that the file it names exists.

    :param pipeline: a compiled YAML path, ``file.py``, ``file.py:function`` or ``module:function``.
    :param dag_folder: what relative paths are relative to (the DAG file's folder); the current
        directory when None.
    :raises FileNotFoundError: the YAML or .py file does not exist (names the resolved path).
    :raises PipelineSourceError: the string fits none of the accepted forms.
    """
    if not isinstance(pipeline, str) or not pipeline.strip():
        raise PipelineSourceError(
            f"pipeline must be a compiled YAML path, 'file.py[:function]' or 'module:function', got {pipeline!r}"
        )
    reference = pipeline.strip()
    if reference.endswith(YAML_SUFFIXES):
        return PipelineSource("yaml", reference, path=existing_pipeline_file(reference, dag_folder))
    if reference.endswith(".py"):
        return PipelineSource("file", reference, path=existing_pipeline_file(reference, dag_folder))
    # rpartition: a path may contain ':' (rare), a function name never does.
    head, sep, function = reference.rpartition(":")
    if sep and _IDENTIFIER.match(function):
        if head.endswith(".py"):
            return PipelineSource(
                "file", reference, path=existing_pipeline_file(head, dag_folder), function=function
            )
        if _DOTTED.match(head):
            return PipelineSource("module", reference, module=head, function=function)
    raise PipelineSourceError(
        f"pipeline {reference!r} is not a compiled pipeline (.yaml/.yml), a source file "
        "('path/to/file.py' or 'path/to/file.py:function') or 'package.module:function'"
    )


# --------------------------------------------------------------------------------------------------
# Loading and compiling pipeline functions
# --------------------------------------------------------------------------------------------------


def load_pipeline_function(source: PipelineSource) -> BaseComponent:
    """Import a ``file`` or ``module`` source and return its pipeline (a kfp ``BaseComponent``).

    :raises PipelineSourceError: the source fails to import, or the function is missing, ambiguous
        or not a pipeline.
    """
    if source.kind == "yaml":
        raise PipelineSourceError(
            f"{source.reference} is already compiled; load it with load_pipeline_documents"
        )
    module = _import_file(source.path) if source.kind == "file" else _import_module(source)
    where = source.path if source.kind == "file" else f"module {source.module}"
    if source.function is not None:
        return _named_pipeline(module, source.function, where, source)
    return _only_pipeline(module, where, source)


def _import_file(path: str | None) -> Any:
    assert path is not None
    # A unique name so two files called pipeline.py never collide, and a reload sees edits.
    digest = hashlib.sha256(path.encode()).hexdigest()[:10]
    name = f"_kfp_bridge_pipeline_{_safe_stem(path)}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PipelineSourceError(f"cannot import {path} as Python source")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(path)
    # Like `python file.py`: sibling modules (shared components) import by plain name.
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise PipelineSourceError(_import_failure(path, err)) from err
    finally:
        sys.modules.pop(name, None)
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _safe_stem(path: str) -> str:
    return re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])


def _import_module(source: PipelineSource) -> Any:
    assert source.module is not None
    try:
        return importlib.import_module(source.module)
    except ModuleNotFoundError as err:
        # The module itself (or a parent package) is missing, not something it imports.
        if err.name and (source.module == err.name or source.module.startswith(err.name + ".")):
            raise PipelineSourceError(
                f"pipeline module {source.module!r} (from {source.reference!r}) is not importable: {err}. "
                "Put its folder on sys.path, or name the file instead: 'path/to/file.py:function' "
                "(relative to the DAG file's folder)"
            ) from err
        raise PipelineSourceError(_import_failure(_module_file(source.module), err)) from err
    except Exception as err:
        raise PipelineSourceError(_import_failure(_module_file(source.module), err)) from err


def _module_file(module: str) -> str:
    try:
        spec = importlib.util.find_spec(module)
    except Exception:  # a broken parent package: the dotted name is the best we can say
        return module
    return spec.origin if spec is not None and spec.origin else module


def _import_failure(where: str | None, err: BaseException) -> str:
    message = f"importing pipeline source {where} failed: {type(err).__name__}: {err}"
    if where and os.path.isfile(where):
        with open(where, encoding="utf-8", errors="replace") as handle:
            if _FUTURE_ANNOTATIONS.search(handle.read()):
                # kfp inspects annotations while the decorators run and cannot resolve PEP 563 strings.
                message += (
                    f". {where} has 'from __future__ import annotations', which kfp cannot read in "
                    "component and pipeline signatures: remove it (and add '# ruff: noqa: I002' at the top)"
                )
    return message


def _defined_here(obj: Any, module: Any) -> bool:
    func = getattr(obj, "pipeline_func", None) or getattr(obj, "python_func", None)
    return getattr(func, "__module__", None) == module.__name__


def _pipelines_and_components(module: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from kfp.dsl.base_component import BaseComponent
    from kfp.dsl.graph_component import GraphComponent

    pipelines: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for attr, obj in vars(module).items():
        if isinstance(obj, BaseComponent) and _defined_here(obj, module):
            (pipelines if isinstance(obj, GraphComponent) else components)[attr] = obj
    return pipelines, components


def _only_pipeline(module: Any, where: str, source: PipelineSource) -> Any:
    pipelines, components = _pipelines_and_components(module)
    if len(pipelines) == 1:
        return next(iter(pipelines.values()))
    if not pipelines and len(components) == 1:
        return next(iter(components.values()))
    if pipelines:
        names = ", ".join(sorted(pipelines))
        raise PipelineSourceError(
            f"{where} defines {len(pipelines)} @dsl.pipeline functions ({names}); "
            f"name one: '{source.reference}:{sorted(pipelines)[0]}'"
        )
    raise PipelineSourceError(
        f"{where} defines no @dsl.pipeline function; decorate one with @dsl.pipeline(name=...)"
    )


def _named_pipeline(module: Any, function: str, where: str, source: PipelineSource) -> Any:
    from kfp.dsl.base_component import BaseComponent

    obj = getattr(module, function, None)
    if obj is None:
        pipelines, components = _pipelines_and_components(module)
        known = sorted(pipelines) or sorted(components)
        import difflib  # error path only: not paid at parse time

        close = difflib.get_close_matches(function, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise PipelineSourceError(
            f"{where} has no function {function!r} (from {source.reference!r}); {hint}"
            f"pipelines defined there: {', '.join(known) or 'none'}"
        )
    if not isinstance(obj, BaseComponent):
        raise PipelineSourceError(
            f"{function!r} in {where} is not a KFP pipeline (got {type(obj).__name__}); decorate it with @dsl.pipeline"
        )
    return obj


def compile_pipeline_to_file(source: PipelineSource, package_path: str) -> None:
    """Compile a ``file``/``module`` source to ``package_path`` (.yaml) with kfp's compiler.

    In this interpreter when it has the kfp SDK, else in the SDK's own venv (:mod:`kfp_bridge.utils.sdk`).
    """
    from kfp_bridge.utils import sdk

    if not sdk.sdk_in_process():
        _compile_with_sdk_python(source, package_path)
        return
    compile_in_process(source, package_path)


def compile_in_process(source: PipelineSource, package_path: str) -> None:
    """:func:`compile_pipeline_to_file` in this interpreter (ImportError when it has no kfp)."""
    from kfp import compiler

    pipeline = load_pipeline_function(source)
    try:
        compiler.Compiler().compile(pipeline, package_path=package_path)
    except Exception as err:
        raise PipelineSourceError(
            f"compiling {source.reference} failed: {type(err).__name__}: {err}; fix the pipeline definition"
        ) from err


def _compile_with_sdk_python(source: PipelineSource, package_path: str) -> None:
    from kfp_bridge.utils import sdk

    try:
        python = sdk.configured_sdk_python()
    except sdk.SdkUnavailableError as err:
        raise PipelineSourceError(f"cannot compile {source.reference}: {err}") from None
    if python is None:
        raise PipelineSourceError(f"cannot compile {source.reference}: {sdk.SETUP_HINT}")
    where = source.path if source.kind == "file" else source.module
    reference = f"{where}:{source.function}" if source.function else str(where)
    try:
        sdk.compile_in_subprocess(python, reference, package_path)
    except sdk.SdkUnavailableError as err:
        raise PipelineSourceError(f"cannot compile {source.reference}: {err}") from None
    except ValueError as err:
        raise PipelineSourceError(str(err)) from None


def compile_pipeline_function(
    source: PipelineSource | str, dag_folder: str | None = None
) -> PipelineDocuments:
    """Compile a pipeline function at execute time and return it as if loaded from YAML.

    Goes through a temporary YAML file on purpose: the result is byte-for-byte what
    ``kfp-bridge compile`` would commit, so hashes and version names agree with the committed file.
    """
    if isinstance(source, str):
        source = resolve_pipeline_source(source, dag_folder)
    with tempfile.TemporaryDirectory(prefix="kfp-bridge-compile-") as tmp:
        package_path = os.path.join(tmp, "pipeline.yaml")
        compile_pipeline_to_file(source, package_path)
        documents = load_pipeline_documents(package_path)
    return dataclasses.replace(documents, path=None)


def load_pipeline_package(pipeline: str, dag_folder: str | None = None) -> PipelineDocuments:
    """Resolve any accepted reference and return the compiled documents (compiling if needed)."""
    source = resolve_pipeline_source(pipeline, dag_folder)
    if source.kind == "yaml":
        assert source.path is not None
        return load_pipeline_documents(source.path)
    return compile_pipeline_function(source)


def load_pipeline(pipeline: str, dag_folder: str | None = None) -> dict[str, Any]:
    """Resolve any accepted reference and return its PipelineSpec dict (compiling if needed).

    :raises PipelineSourceError: the pipeline also has a platform spec (kfp-kubernetes settings such
        as secrets or volumes). Callers that submit a single PipelineSpec would silently drop it and
        run a different pipeline than the one in git, so this refuses; callers that can submit both
        use :func:`load_pipeline_package`.
    """
    documents = load_pipeline_package(pipeline, dag_folder)
    if documents.platform_spec:
        platforms = ", ".join(sorted(documents.platform_spec.get("platforms", {}))) or "unknown"
        raise PipelineSourceError(
            f"pipeline {pipeline!r} carries platform-specific settings ({platforms}, e.g. from kfp-kubernetes) "
            "that would be dropped on submit; remove them from the pipeline or submit it with "
            "load_pipeline_package(...).to_api_dict()"
        )
    return documents.pipeline_spec
