"""Find, load, compile, hash and validate KFP pipelines.

A pipeline is given as one string (the operator's ``pipeline`` argument, the CLI's sources):

* ``path/to/pipeline.yaml`` — a compiled pipeline, absolute or relative to the DAG file's folder;
* ``path/to/file.py`` or ``path/to/file.py:function`` — a pipeline source loaded by path (the
  file's folder is put on ``sys.path`` while it runs, like ``python file.py``), no package needed;
* ``package.module:function`` — a pipeline source imported from ``sys.path`` (Airflow puts the DAG
  folder there).

Without ``:function`` a source file must define exactly one ``@dsl.pipeline`` (or, with none, exactly
one ``@dsl.component``), as ``kfp dsl compile`` does; objects imported from other modules don't count.

DAG files import the operator at parse time, and parse time must never import kfp, so kfp is
imported inside the functions that need it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from kfp.dsl.base_component import BaseComponent

YAML_SUFFIXES = (".yaml", ".yml")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_FUTURE_ANNOTATIONS = re.compile(r"^\s*from\s+__future__\s+import\s+.*\bannotations\b", re.MULTILINE)


class PipelineSourceError(ValueError):
    """A pipeline reference, source file or compiled YAML that cannot be used as given."""


class PipelineParamsError(ValueError):
    """Run parameters that don't match the pipeline's declared inputs; ``problems`` lists each one."""

    def __init__(self, pipeline_name: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid params for pipeline {pipeline_name!r}:\n{lines}")


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
        return PipelineSource("yaml", reference, path=_existing_file(reference, dag_folder))
    if reference.endswith(".py"):
        return PipelineSource("file", reference, path=_existing_file(reference, dag_folder))
    # rpartition: a path may contain ':' (rare), a function name never does.
    head, sep, function = reference.rpartition(":")
    if sep and _IDENTIFIER.match(function):
        if head.endswith(".py"):
            return PipelineSource("file", reference, path=_existing_file(head, dag_folder), function=function)
        if _DOTTED.match(head):
            return PipelineSource("module", reference, module=head, function=function)
    raise PipelineSourceError(
        f"pipeline {reference!r} is not a compiled pipeline (.yaml/.yml), a source file "
        "('path/to/file.py' or 'path/to/file.py:function') or 'package.module:function'"
    )


def _existing_file(path: str, dag_folder: str | None) -> str:
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded):
        resolved, relative_to = expanded, None
    else:
        base = dag_folder if dag_folder is not None else os.getcwd()
        resolved = os.path.join(base, expanded)
        relative_to = (
            f"relative to the DAG folder {dag_folder}"
            if dag_folder is not None
            else f"relative to the current directory {base}"
        )
    resolved = os.path.normpath(os.path.abspath(resolved))
    if not os.path.isfile(resolved):
        where = f" ({relative_to})" if relative_to else ""
        what = "is a directory, not a file" if os.path.isdir(resolved) else "does not exist"
        fix = (
            "an absolute path or one relative to the DAG file's folder"
            if dag_folder is not None
            else "an existing file"
        )
        raise FileNotFoundError(f"pipeline file {resolved} {what}{where}; pass {fix}")
    return resolved


# --------------------------------------------------------------------------------------------------
# Loading compiled YAML
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PipelineDocuments:
    """A compiled pipeline: the PipelineSpec and the optional PlatformSpec (second YAML document).

    :param pipeline_spec: the PipelineSpec as a camelCase dict, as in the YAML.
    :param platform_spec: the PlatformSpec (kfp-kubernetes settings) or None.
    :param path: the file it came from, when it came from a file.
    """

    pipeline_spec: dict[str, Any]
    platform_spec: dict[str, Any] | None = None
    path: str | None = None

    @property
    def name(self) -> str:
        return str(self.pipeline_spec.get("pipelineInfo", {}).get("name", ""))

    def to_api_dict(self) -> dict[str, Any]:
        """What a Run or PipelineVersion carries in ``pipeline_spec`` (the shape kfp.Client sends)."""
        if not self.platform_spec:
            return self.pipeline_spec
        return {"pipeline_spec": self.pipeline_spec, "platform_spec": self.platform_spec}


def load_pipeline_documents(path: str) -> PipelineDocuments:
    """Read a compiled pipeline YAML (one document, or two with a platform spec).

    :raises FileNotFoundError: no such file.
    :raises PipelineSourceError: not YAML, or YAML that is not a compiled KFP v2 pipeline.
    """
    import yaml

    fix = "recompile it with `kfp-bridge compile <pipeline source>.py`"
    with open(path, encoding="utf-8") as stream:
        try:
            documents = [doc for doc in yaml.safe_load_all(stream) if doc is not None]
        except yaml.YAMLError as err:
            raise PipelineSourceError(f"{path} is not valid YAML ({err}); {fix}") from err
    if not documents:
        raise PipelineSourceError(f"{path} is empty; {fix}")
    if not all(isinstance(doc, dict) for doc in documents):
        raise PipelineSourceError(
            f"{path} is not a compiled KFP pipeline (a document is not a mapping); {fix}"
        )
    pipeline_spec = documents[0]
    _check_is_pipeline_spec(pipeline_spec, path, fix)
    # kfp.Client merges every later document into the platform spec; do the same.
    platform_spec: dict[str, Any] = {}
    for doc in documents[1:]:
        platform_spec.update(doc)
    _check_protobuf(pipeline_spec, platform_spec, path, fix)
    return PipelineDocuments(pipeline_spec, platform_spec or None, path=path)


def load_pipeline_spec(path: str) -> dict[str, Any]:
    """The PipelineSpec dict of a compiled pipeline YAML (see :func:`load_pipeline_documents`)."""
    return load_pipeline_documents(path).pipeline_spec


def _check_is_pipeline_spec(doc: dict[str, Any], path: str, fix: str) -> None:
    if "pipelineInfo" in doc and "root" in doc:
        return
    if "apiVersion" in doc and "kind" in doc:
        hint = "it is a Kubernetes manifest; compile without kubernetes_manifest_format"
    elif "implementation" in doc:
        hint = "it looks like a KFP v1 component or pipeline; compile it with kfp>=2"
    else:
        hint = f"it has no 'pipelineInfo' and 'root' (top-level keys: {', '.join(sorted(doc)) or 'none'})"
    raise PipelineSourceError(f"{path} is not a compiled KFP v2 pipeline: {hint}; {fix}")


def _check_protobuf(
    pipeline_spec: dict[str, Any], platform_spec: dict[str, Any], path: str, fix: str
) -> None:
    # The same parse kfp.Client does before submitting: catches misspelt or hand-edited fields here
    # rather than as an opaque API error after side effects.
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    for doc, message, label in (
        (pipeline_spec, pipeline_spec_pb2.PipelineSpec(), "pipeline spec"),
        (platform_spec, pipeline_spec_pb2.PlatformSpec(), "platform spec"),
    ):
        try:
            json_format.ParseDict(doc, message)
        except json_format.ParseError as err:
            raise PipelineSourceError(f"{path}: invalid {label} ({err}); {fix}") from err


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


def with_caching(spec: Mapping[str, Any], enable_caching: bool) -> dict[str, Any]:
    """A copy of the PipelineSpec with caching switched on or off for every task.

    kfp.Client only overrides the root DAG's tasks; tasks inside sub-DAGs (ParallelFor, If, nested
    pipelines) kept their compiled setting, so "no caching for this run" silently still cached there.
    Here every DAG in the spec is covered.
    """
    copied = copy.deepcopy(dict(spec))
    dags = [copied.get("root", {}).get("dag", {})]
    dags += [component.get("dag", {}) for component in copied.get("components", {}).values()]
    for dag in dags:
        for task in (dag.get("tasks") or {}).values():
            task.setdefault("cachingOptions", {})["enableCache"] = bool(enable_caching)
    return copied


def pipeline_name(spec: Mapping[str, Any]) -> str:
    """``pipelineInfo.name`` (what ``@dsl.pipeline(name=...)`` set)."""
    return str(_unwrap(spec).get("pipelineInfo", {}).get("name") or "")


def version_name(spec: Mapping[str, Any], platform_spec: Mapping[str, Any] | None = None) -> str:
    """A pipeline version name derived from content only: the same spec always gets the same name.

    So a version is uploaded once per distinct pipeline and a run names the exact content it ran
    (the versions-pinned-to-git ask, kubeflow/pipelines#13933).
    """
    return f"v-{spec_short_hash(spec, platform_spec)}"


def _unwrap(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    # Accept the API form {"pipeline_spec": ..., "platform_spec": ...} wherever a PipelineSpec goes.
    if set(spec) == {"pipeline_spec", "platform_spec"}:
        return spec["pipeline_spec"]
    return spec


# --------------------------------------------------------------------------------------------------
# Content hash
# --------------------------------------------------------------------------------------------------

# sdkVersion records which kfp wrote the file, not what runs: anything about the SDK that changes
# execution (e.g. the `pip install kfp==...` step) already shows up in the executors' commands. Leaving
# it out means a kfp patch upgrade does not mint a new pipeline version for an unchanged pipeline.
_VOLATILE_TOP_LEVEL_KEYS = frozenset({"sdkVersion"})


def spec_content_hash(spec: Mapping[str, Any], platform_spec: Mapping[str, Any] | None = None) -> str:
    """Stable sha256 (64 hex chars) of a pipeline's content, for pinning versions to what is in git.

    Accepts the PipelineSpec dict (plus the optional platform spec) or the API form
    ``{"pipeline_spec": ..., "platform_spec": ...}`` that a PipelineVersion returns, so a spec read
    back from the server hashes the same as the YAML it was uploaded from.
    """
    if set(spec) == {"pipeline_spec", "platform_spec"} and platform_spec is None:
        spec, platform_spec = spec["pipeline_spec"], spec["platform_spec"]
    content: dict[str, Any] = {
        "pipeline_spec": {k: v for k, v in spec.items() if k not in _VOLATILE_TOP_LEVEL_KEYS},
    }
    if platform_spec:  # an empty platform spec means "none", as in kfp.Client
        content["platform_spec"] = platform_spec
    canonical = json.dumps(_canonical(content), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def spec_short_hash(
    spec: Mapping[str, Any], platform_spec: Mapping[str, Any] | None = None, length: int = 12
) -> str:
    """The first ``length`` hex chars of :func:`spec_content_hash` (e.g. for version names)."""
    return spec_content_hash(spec, platform_spec)[:length]


def _canonical(value: Any) -> Any:
    # The API stores specs as protobuf Structs, where every number is a double: 200 and 200.0 are the
    # same value there, so they must hash the same here.
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    raise TypeError(f"pipeline spec contains a {type(value).__name__} ({value!r}), which has no JSON form")


# --------------------------------------------------------------------------------------------------
# Declared inputs and parameter validation
# --------------------------------------------------------------------------------------------------

_TYPE_WORDS = {
    "STRING": "a string",
    "NUMBER_INTEGER": "an integer",
    "NUMBER_DOUBLE": "a float",
    "BOOLEAN": "a boolean",
    "LIST": "a list",
    "STRUCT": "a dict",
}
# Pipelines compiled before parameterType existed (kfp 2.0 betas) used `type`.
_LEGACY_TYPES = {"STRING": "STRING", "INT": "NUMBER_INTEGER", "DOUBLE": "NUMBER_DOUBLE"}


@dataclasses.dataclass(frozen=True)
class InputParam:
    """One pipeline parameter from ``root.inputDefinitions.parameters``.

    :param type: the KFP parameterType (STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN, LIST, STRUCT).
    :param default: the default value, or None.
    :param has_default: whether the spec carries a default (a default can itself be falsy).
    :param optional: whether the run may leave it out.
    """

    type: str
    default: Any = None
    has_default: bool = False
    optional: bool = False

    @property
    def required(self) -> bool:
        return not (self.optional or self.has_default)


def declared_inputs(spec: Mapping[str, Any]) -> dict[str, InputParam]:
    """The pipeline's parameters by name (artifact inputs of the root DAG are not run parameters)."""
    parameters = _unwrap(spec).get("root", {}).get("inputDefinitions", {}).get("parameters", {}) or {}
    inputs: dict[str, InputParam] = {}
    for name, definition in parameters.items():
        kind = definition.get("parameterType") or _LEGACY_TYPES.get(definition.get("type", ""), "STRING")
        has_default = "defaultValue" in definition
        default = definition.get("defaultValue")
        if kind == "NUMBER_INTEGER" and isinstance(default, float) and default.is_integer():
            default = int(default)  # the compiler writes int defaults as 200.0
        inputs[name] = InputParam(
            type=kind,
            default=default,
            has_default=has_default,
            optional=bool(definition.get("isOptional", False)),
        )
    return inputs


def validate_params(spec: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check run parameters against the pipeline's inputs and return them ready for the API.

    Numbers are coerced where no information is lost (int → float for NUMBER_DOUBLE, 3.0 → 3 for
    NUMBER_INTEGER); anything else of the wrong type is rejected rather than guessed at, because the
    KFP backend would only fail later, inside the run. None for an optional parameter without a
    default is left out, so the pipeline sees "not given".

    :raises PipelineParamsError: one error listing every problem (unknown, missing, wrong type).
    """
    params = dict(params or {})
    declared = declared_inputs(spec)
    title = pipeline_name(spec) or "pipeline"
    problems: list[str] = []
    coerced: dict[str, Any] = {}

    for name, value in params.items():
        if not isinstance(name, str):
            problems.append(f"params key {name!r} is a {type(name).__name__}; parameter names are strings")
            continue
        param = declared.get(name)
        if param is None:
            problems.append(_unknown(name, declared))
            continue
        if value is None:
            if param.optional and not param.has_default:
                continue
            default = f"; omit it to use the default {param.default!r}" if param.has_default else ""
            problems.append(
                f"pipeline parameter {name!r} expects {_TYPE_WORDS.get(param.type, param.type)} "
                f"({param.type}), got None from params[{name!r}]{default}"
            )
            continue
        ok, result, hint = _coerce(param.type, value)
        if ok:
            coerced[name] = result
        else:
            problems.append(
                f"pipeline parameter {name!r} expects {_TYPE_WORDS.get(param.type, param.type)} ({param.type}), "
                f"got {_short_repr(value)} ({type(value).__name__}) from params[{name!r}]{hint}"
            )

    for name, param in declared.items():
        if param.required and name not in params:
            problems.append(
                f"missing required pipeline parameter {name!r} "
                f"({_TYPE_WORDS.get(param.type, param.type)}, {param.type}); add it to params"
            )

    if problems:
        raise PipelineParamsError(title, problems)
    return coerced


def _unknown(name: str, declared: Mapping[str, InputParam]) -> str:
    accepted = sorted(declared)
    by_lower = {n.lower(): n for n in accepted}
    close = difflib.get_close_matches(name, accepted, n=1) or (
        [by_lower[name.lower()]] if name.lower() in by_lower else []
    )
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    names = ", ".join(accepted) if accepted else "none"
    return f"unknown pipeline parameter {name!r}{hint}; the pipeline accepts: {names}"


_NATIVE_HINT = (
    "; a Jinja-templated value renders as a string unless the DAG sets render_template_as_native_obj=True"
)


def _coerce(kind: str, value: Any) -> tuple[bool, Any, str]:
    """(accepted, value for the API, hint for the error message)."""
    if kind == "STRING":
        return isinstance(value, str), value, ""
    if kind == "BOOLEAN":
        return isinstance(value, bool), value, _NATIVE_HINT if isinstance(value, str) else ""
    if kind in ("NUMBER_INTEGER", "NUMBER_DOUBLE"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, value, _NATIVE_HINT if isinstance(value, str) else ""
        if not math.isfinite(value):
            return False, value, "; NaN and infinity have no JSON form"
        if kind == "NUMBER_DOUBLE":
            return True, float(value), ""
        if isinstance(value, float):
            if value.is_integer():
                return True, int(value), ""
            return False, value, "; it has a fractional part"
        return True, value, ""
    if kind == "LIST":
        if not isinstance(value, list | tuple):
            return False, value, _NATIVE_HINT if isinstance(value, str) else ""
        return _json_ready(list(value))
    if kind == "STRUCT":
        if not isinstance(value, Mapping):
            return False, value, _NATIVE_HINT if isinstance(value, str) else ""
        return _json_ready(dict(value))
    # A type this module doesn't know (newer KFP): pass it through and let the server decide.
    return True, value, ""


def _json_ready(value: Any) -> tuple[bool, Any, str]:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        return False, value, f"; it must be JSON-serialisable ({err})"
    return True, value, ""


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
