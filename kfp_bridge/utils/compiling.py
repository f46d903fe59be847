"""``kfp-bridge compile SRC... [--check]``: keep compiled pipeline YAML in git in step with its source.

Each source (``file.py``, ``file.py:function`` or ``package.module:function``; see
:mod:`kfp_bridge.utils.pipeline_sources`) compiles to ``<source folder>/<source stem>.yaml``.
``--check`` writes nothing in the tree: it compiles to a temporary file and compares it with the
committed one, so CI fails when someone edits a pipeline and forgets to recompile.

Exit codes: 0 all good, 1 at least one YAML is stale or missing (``--check``), 2 a source is unusable.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator

from kfp_bridge.utils.pipeline_sources import (
    PipelineSource,
    PipelineSourceError,
    compile_pipeline_to_file,
    resolve_pipeline_source,
)

EXIT_OK = 0
EXIT_STALE = 1
EXIT_BAD_SOURCE = 2

# kfp's compiler output is deterministic for one kfp version (sorted keys, no timestamps or random
# ids; verified by compiling twice and from two import paths). The only field that moves with nothing
# else is sdkVersion, on a kfp upgrade; a file that differs only there still describes the same
# pipeline, so it is not called stale.
_VOLATILE_LINE = re.compile(r"^sdkVersion: .*$", re.MULTILINE)


def compile_sources(sources: list[str], check: bool = False) -> int:
    """Compile (or, with ``check``, verify) each source's YAML; print one line per source.

    :param sources: ``file.py``, ``file.py:function`` or ``module:function``, relative to the cwd.
    :param check: compare with the committed YAML instead of writing it.
    :return: 0, 1 (stale or missing YAML under ``check``) or 2 (a bad source; its error is printed).
    """
    # Like `python -m` and uvicorn: 'module:function' resolves from the current directory too,
    # which a console script's sys.path does not include.
    with _cwd_on_sys_path():
        return _compile_all(sources, check)


@contextlib.contextmanager
def _cwd_on_sys_path() -> Iterator[None]:
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _compile_all(sources: list[str], check: bool) -> int:
    status = EXIT_OK
    targets: dict[str, str] = {}
    for reference in sources:
        try:
            source = resolve_pipeline_source(reference)
            if source.kind == "yaml":
                raise PipelineSourceError(
                    f"{reference} is already compiled; pass its pipeline source (file.py or module:function)"
                )
            target = _target_for(source)
            if target in targets:
                raise PipelineSourceError(
                    f"{reference} and {targets[target]} both compile to {_display(target)}; "
                    "keep one pipeline per source file"
                )
            targets[target] = reference
            if check:
                if not _is_current(source, target):
                    status = max(status, EXIT_STALE)
                    missing = "missing; " if not os.path.exists(target) else ""
                    print(f"stale: {_display(target)} ({missing}run: kfp-bridge compile {reference})")
                else:
                    print(f"up to date: {_display(target)}")
            else:
                _compile_in_place(source, target)
                print(f"compiled: {reference} -> {_display(target)}")
        except (PipelineSourceError, FileNotFoundError) as err:
            print(f"error: {reference}: {err}", file=sys.stderr)
            status = EXIT_BAD_SOURCE
    return status


def _target_for(source: PipelineSource) -> str:
    path = source.path if source.kind == "file" else _module_origin(source)
    assert path is not None
    return os.path.splitext(path)[0] + ".yaml"


def _module_origin(source: PipelineSource) -> str:
    assert source.module is not None
    try:
        spec = importlib.util.find_spec(source.module)
    except (ImportError, ValueError) as err:
        spec, cause = None, f": {err}"
    else:
        cause = ""
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        raise PipelineSourceError(
            f"pipeline module {source.module!r} (from {source.reference!r}) was not found on sys.path{cause}; "
            "run from the folder that contains it, or pass the file: 'path/to/file.py:function'"
        )
    return os.path.abspath(spec.origin)


def _is_current(source: PipelineSource, target: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="kfp-bridge-check-") as tmp:
        fresh = os.path.join(tmp, os.path.basename(target))
        compile_pipeline_to_file(source, fresh)
        if not os.path.exists(target):
            return False
        return _normalised(fresh) == _normalised(target)


def _normalised(path: str) -> str:
    with open(path, encoding="utf-8", newline="") as handle:
        text = handle.read().replace("\r\n", "\n")
    return _VOLATILE_LINE.sub("", text)


def _compile_in_place(source: PipelineSource, target: str) -> None:
    # Compile beside the target and swap, so a failed compile never leaves a half-written YAML.
    fd, partial = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".kfp-bridge-", suffix=".yaml")
    os.close(fd)
    try:
        compile_pipeline_to_file(source, partial)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def _display(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
