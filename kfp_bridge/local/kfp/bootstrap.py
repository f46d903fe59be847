"""Components compiled with kfp's default settings run unchanged on the KFP stand-in.

A default ``@dsl.component`` (``install_kfp_package=True``, maybe ``packages_to_install`` and
``pip_index_urls``) starts with a pip bootstrap (kfp/dsl/component_factory.py,
``_get_packages_to_install_command``)::

    sh -c '... python3 -m pip install <packages_to_install> && python3 -m pip install kfp==2.x --no-deps
           && "$0" "$@"' sh -ec '... python3 -m kfp.dsl.executor_main ...' <source> --executor_input ...

On KFP that installs into the image's python. kfp.local replaces every ``python3`` in that command
with the interpreter of its task environment (subprocess_task_handler ``replace_python_executable``);
here that interpreter is a per-task ``python3`` shim:

* ``python3 -m pip install ...`` comes to :func:`main`. kfp (any 2.x: the SDK pins the version it
  compiled with) and the distributions that ship with it are served by the stand-in's own kfp
  runtime; everything else is installed once into a virtualenv per requirement set under
  ``STATE_DIR/venvs`` (uv when available, else ``python -m venv`` + pip), which every later task
  and run with the same set reuses: the model of kfp.local's ``use_venv`` without a reinstall per
  task. The venv sees the stand-in's packages through a ``.pth`` file; nothing is ever installed
  into the stand-in's own environment. An install failure fails the step with uv's/pip's message.
* every other ``python3`` runs on that venv's interpreter. A component with the bootstrap gets a
  venv even without ``packages_to_install``: like the image after ``pip install kfp --no-deps``,
  it sees the stdlib, kfp (a symlinked view of the stand-in's kfp, nothing else of the stand-in's
  environment) and what it installed, so an import that ``packages_to_install`` forgot fails
  here as it does on a cluster. Components compiled with ``install_kfp_package=False`` (written
  for a prepared environment) keep running on the stand-in's own interpreter.

Container components (and containerized Python components) need their image: KFP runs them as
pods. The stand-in has no container engine, so such a step fails with a message saying so.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kfp.local import status

PREFIX = "kfp-bridge stand-in:"
# What the SDK's bootstrap installs (``kfp==<its version> --no-deps``), served by the stand-in's kfp.
RUNTIME_DISTRIBUTION = "kfp"
READY_FILE = "kfp-bridge-env.json"  # written last: its presence means the venv is complete
USES_FILE = "kfp-bridge-uses.jsonl"  # one line per task that used the venv (created or reused, seconds)
RUNTIME_PTH = "_kfp_bridge_stand_in_runtime.pth"
EXECUTOR_MODULE = "kfp.dsl.executor_main"  # kfp.dsl.component_factory.EXECUTOR_MODULE
CONTAINERIZED_PYTHON_COMMAND = ["python3", "-m", EXECUTOR_MODULE]

# pip options that only shape pip's own behaviour here (output, caches, where a user install goes).
_IGNORED_FLAGS = {"--no-warn-script-location", "--disable-pip-version-check", "--no-cache-dir", "--user",
                  "--break-system-packages", "--no-warn-conflicts", "--isolated", "--no-input", "--no-color"}
_IGNORED_VALUES = {"--root-user-action", "--progress-bar", "--upgrade-strategy", "--cache-dir", "--timeout",
                   "--retries", "--log"}
# pip options with a value that change what gets installed, by their canonical pip spelling.
_VALUE_OPTIONS = {"-i": "--index-url", "--index-url": "--index-url", "--extra-index-url": "--extra-index-url",
                  "-f": "--find-links", "--find-links": "--find-links", "--trusted-host": "--trusted-host",
                  "-r": "--requirement", "--requirement": "--requirement", "-c": "--constraint",
                  "--constraint": "--constraint", "-e": "--editable", "--editable": "--editable",
                  "--only-binary": "--only-binary", "--no-binary": "--no-binary"}
# Where uv spells a pip option differently.
_UV_SPELLING = {"--trusted-host": "--allow-insecure-host", "--requirement": "-r", "--constraint": "-c",
                "--editable": "-e"}

_SHIM = """#!/bin/sh
# python3 of one component process on the kfp-bridge KFP stand-in (kfp_bridge/local/kfp/bootstrap.py).
if [ "$1" = "-m" ] && {{ [ "$2" = pip ] || [ "$2" = ensurepip ]; }}; then
    exec {python} -m kfp_bridge.local.kfp.bootstrap {shim} "$@"
fi
exec "$(cat {interpreter})" "$@"
"""


class InstallFailed(Exception):
    def __init__(self, command: list[str], code: int) -> None:
        super().__init__(f"{shlex.join(command)} exited with code {code}")
        self.code = code


@dataclass(frozen=True)
class PipInstall:
    """One ``pip install`` command line: requirements as given, and the options that matter."""

    requirements: tuple[str, ...]
    options: tuple[str, ...] = ()
    quiet: bool = False

    def needs_install(self) -> bool:
        return bool(self.requirements) or any(o in ("--requirement", "--editable") for o in self.options)

    def pip_args(self) -> list[str]:
        return [*self.options, *self.requirements] + (["--quiet"] if self.quiet else [])

    def uv_args(self) -> list[str]:
        args: list[str] = []
        options = list(self.options)
        while options:
            option = options.pop(0)
            if option == "--pre":
                args += ["--prerelease", "allow"]
            elif option == "--trusted-host" and options and options[0].startswith("file:"):
                options.pop(0)  # the SDK trusts every index URL; uv rejects a file: one, and TLS has no say there
            else:
                args.append(_UV_SPELLING.get(option, option))
        return [*args, *self.requirements] + (["--quiet"] if self.quiet else [])

    def to_json(self) -> dict[str, Any]:
        return {"requirements": list(self.requirements), "options": list(self.options)}


def parse_pip_install(args: list[str]) -> PipInstall:
    """The arguments after ``pip install``, as the SDK (or a user) wrote them."""
    requirements: list[str] = []
    options: list[str] = []
    quiet = False
    items = list(args)
    while items:
        arg = items.pop(0)
        if not arg.startswith("-") or arg == "-":
            requirements.append(arg)
            continue
        name, has_value, value = arg.partition("=")
        if name in _VALUE_OPTIONS or name in _IGNORED_VALUES:
            if not has_value:
                value = items.pop(0) if items else ""
            if name in _VALUE_OPTIONS:
                options += [_VALUE_OPTIONS[name], value]
        elif re.fullmatch(r"-q+|--quiet", arg):
            quiet = True
        elif arg in ("-U", "--upgrade"):
            options.append("--upgrade")
        elif arg not in _IGNORED_FLAGS:
            options.append(arg)  # --no-deps, --pre, --no-index, ... (an unknown one gets the installer's message)
    return PipInstall(tuple(requirements), tuple(options), quiet)


def _installed_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def classify(requirement: str) -> tuple[str, str]:
    """``("skip", why)``, ``("served", version)`` or ``("install", "")`` for one requirement."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        return "install", ""  # a path, URL or VCS reference: the installer decides
    if req.marker is not None and not req.marker.evaluate():
        return "skip", f"markers '{req.marker}' don't match this environment"  # pip skips it too
    name = canonicalize_name(req.name)
    installed = _installed_version(name) if name == RUNTIME_DISTRIBUTION and not req.url else None
    if installed is None:
        return "install", ""
    if req.specifier.contains(installed, prereleases=True):
        return "served", installed
    # The SDK pins the kfp it compiled with; every 2.x runtime executes a 2.x component the same way.
    pins = [spec.version for spec in req.specifier if spec.operator == "=="]
    if pins and Version(installed).major == 2 and all(p.split(".")[0] == "2" for p in pins):
        return "served", installed
    return "install", ""


def find_uv() -> str | None:
    """The project's pinned uv (``.tools/bin/uv``, what make installs), else one next to python or on PATH."""
    candidates = [Path(__file__).resolve().parents[3] / ".tools" / "bin" / "uv", Path(sys.executable).parent / "uv"]
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("uv")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def runtime_view(root: Path) -> Path:
    """A folder with only the stand-in's kfp (package and dist-info, symlinked): what a component's
    image holds after the SDK's ``pip install kfp==… --no-deps``. Venvs put it on their path."""
    from importlib import metadata

    dist = metadata.distribution(RUNTIME_DISTRIBUTION)
    view = Path(root).absolute() / f"_kfp-{dist.version}-runtime"
    if (view / ".ready").exists():
        return view
    with _locked(view.with_name(view.name + ".lock")):
        if not (view / ".ready").exists():
            shutil.rmtree(view, ignore_errors=True)
            view.mkdir(parents=True)
            tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
            for top in sorted(tops):
                target = Path(str(dist.locate_file(top)))
                if target.exists():
                    (view / top).symlink_to(target)
            (view / ".ready").write_text(str(dist.locate_file("")))
    return view


class Environments:
    """Virtualenvs for ``pip install`` requirement sets, created once under ``root`` and reused.

    :param root: the cache folder (``STATE_DIR/venvs``).
    :param base_python: the stand-in's interpreter; venvs use its Python and see its kfp (only).
    :param uv: the uv binary, or None for ``python -m venv`` + pip.
    """

    def __init__(self, root: Path, base_python: str = sys.executable, uv: str | None = None) -> None:
        self.root = Path(root).absolute()
        self.base_python = base_python
        self.uv = uv

    def key(self, installs: list[PipInstall]) -> str:
        identity = {
            "python": list(sys.version_info[:3]),
            "base": os.path.realpath(self.base_python),
            "installer": "uv" if self.uv else "pip",
            # A venv sees the stand-in's kfp (only): a new kfp there means new venvs.
            "sees": f"kfp-only {_installed_version(RUNTIME_DISTRIBUTION)}",
            "installs": [{"requirements": sorted(i.requirements), "options": list(i.options)} for i in installs],
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        names = sorted(re.split(r"[^A-Za-z0-9_.-]", r, maxsplit=1)[0] for i in installs for r in i.requirements)
        label = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(n for n in names if n))[:40].strip("-.")
        return f"{label or 'kfp-only'}-{digest}"

    def ensure(self, installs: list[PipInstall], run_id: str = "") -> tuple[Path, bool, float]:
        """The venv's python for ``installs``, whether this call created it, and the seconds it took."""
        started = time.monotonic()
        env = self.root / self.key(installs)
        created = False
        if not (env / READY_FILE).exists():
            self.root.mkdir(parents=True, exist_ok=True)
            # Two runs (or two loop iterations) asking for the same set at once: one builds, the other waits.
            with _locked(self.root / f"{env.name}.lock"):
                if not (env / READY_FILE).exists():
                    shutil.rmtree(env, ignore_errors=True)  # half-built by a run that was killed
                    try:
                        self._create(env, installs)
                    except BaseException:
                        shutil.rmtree(env, ignore_errors=True)
                        raise
                    created = True
                    self._write_json(env / READY_FILE, {
                        "installs": [i.to_json() for i in installs], "installer": "uv" if self.uv else "pip",
                        "created_at": time.time(), "create_seconds": round(time.monotonic() - started, 3)})
        seconds = time.monotonic() - started
        with open(env / USES_FILE, "a", encoding="utf-8") as uses:
            use = {"at": time.time(), "run_id": run_id, "created": created, "seconds": round(seconds, 3)}
            uses.write(json.dumps(use) + "\n")
        return env / "bin" / "python", created, seconds

    def _create(self, env: Path, installs: list[PipInstall]) -> None:
        python = env / "bin" / "python"
        if self.uv:
            self._run([self.uv, "venv", "--quiet", "--no-project", "--python", self.base_python, str(env)])
            for install in installs:
                self._run([self.uv, "pip", "install", "--python", str(python), *install.uv_args()])
        else:
            self._run([self.base_python, "-m", "venv", str(env)])
            for install in installs:
                self._run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *install.pip_args()])
        # After the install, so it resolves as on a bare image; then the component sees the kfp runtime
        # (appended to sys.path: a kfp the component installed itself wins, as pip's would).
        site_packages = env / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
        (site_packages / RUNTIME_PTH).write_text(f"{runtime_view(self.root)}\n")

    @staticmethod
    def _run(command: list[str]) -> None:
        sys.stdout.flush()
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        code = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, check=False).returncode
        if code != 0:
            raise InstallFailed(command, code)

    @staticmethod
    def _write_json(path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)


# ----- one task: the shim and its state -----


@contextlib.contextmanager
def task_python(shims_root: Path, venvs_root: Path, run_id: str = "") -> Iterator[str]:
    """A ``python3`` shim for one component process; removed when the process is done."""
    if re.search(r"[^\w@%+=:,./-]", str(Path(shims_root).absolute())):
        # kfp.local pastes the interpreter path unquoted into the component's ``sh -c`` script.
        shims_root = Path(tempfile.gettempdir()) / f"kfp-bridge-shims-{os.getuid()}"
    shim = Path(shims_root).absolute() / uuid.uuid4().hex[:12]
    shim.mkdir(parents=True)
    try:
        (shim / "task.json").write_text(json.dumps({"venvs": str(venvs_root), "python": sys.executable,
                                                    "run_id": run_id, "installs": []}))
        (shim / "interpreter").write_text(sys.executable)
        script = shim / "python3"
        q = shlex.quote
        script.write_text(_SHIM.format(python=q(sys.executable), shim=q(str(shim)), interpreter=q(str(shim / "interpreter"))))
        script.chmod(0o755)
        yield str(script)
    finally:
        shutil.rmtree(shim, ignore_errors=True)


def pip_install(shim: Path, args: list[str]) -> int:
    """``python3 -m pip install ARGS`` inside a component process (the shim sends it here)."""
    task = json.loads((shim / "task.json").read_text())
    request = parse_pip_install(args)
    wanted: list[str] = []
    for requirement in request.requirements:
        verdict, detail = classify(requirement)
        if verdict == "served":
            print(f"{PREFIX} {requirement} served by the stand-in's own kfp runtime ({detail})")
        elif verdict == "skip":
            print(f"{PREFIX} ignoring {requirement}: {detail}")
        else:
            wanted.append(requirement)
    install = PipInstall(tuple(wanted), request.options, request.quiet)
    previous = [PipInstall(tuple(i["requirements"]), tuple(i["options"])) for i in task["installs"]]
    if install.needs_install():
        installs = [*previous, install]
    elif previous:
        return 0  # the SDK's kfp line after the user's packages: their environment stays
    else:
        installs = []  # the SDK's kfp line alone: a clean environment that sees kfp only
    environments = Environments(Path(task["venvs"]), task["python"], find_uv())
    what = " ".join(r for i in installs for r in i.requirements) or "kfp only"
    try:
        python, created, seconds = environments.ensure(installs, task.get("run_id", ""))
    except InstallFailed as exc:
        print(f"{PREFIX} could not install {what}: {exc} (the installer's message is above)", file=sys.stderr)
        return exc.code or 1
    env = python.parent.parent
    verb = f"created environment {env.name} for {what} in {seconds:.2f} s" if created else \
        f"reusing environment {env.name} for {what} ({seconds:.2f} s)"
    print(f"{PREFIX} {verb}")
    task["installs"] = [i.to_json() for i in installs]
    (shim / "task.json").write_text(json.dumps(task))
    (shim / "interpreter").write_text(str(python))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "-m":
        print("usage: python -m kfp_bridge.local.kfp.bootstrap SHIM_DIR -m pip install ...", file=sys.stderr)
        return 2
    shim, module, rest = Path(args[0]), args[2], args[3:]
    if module == "ensurepip":
        return 0  # the SDK's "no pip on PATH" branch: pip install is served by the shim
    if not rest or rest[0] != "install":
        print(f"{PREFIX} a component's command can only run `pip install` here, not `pip {shlex.join(rest)}`",
              file=sys.stderr)
        return 1
    return pip_install(shim, rest[1:])


# ----- kfp.local side (the child process) -----


def container_needs(full_command: list[str], image: str) -> str | None:
    """Why a step cannot run here (it needs its image), or None for a Lightweight Python component."""
    if full_command[: len(CONTAINERIZED_PYTHON_COMMAND)] == CONTAINERIZED_PYTHON_COMMAND:
        kind = "a Containerized Python component (its code is inside the image)"
    elif not any(EXECUTOR_MODULE in part for part in full_command):
        kind = "a container component"
    else:
        return None
    return (f"{PREFIX} this step needs a container engine: it is {kind}, image {image!r}, "
            f"command {shlex.join(full_command)[:200]!r}. KFP runs it as a pod on Kubernetes; the stand-in runs "
            "only Lightweight Python components and has no container engine (Docker/Kubernetes). Run this "
            "pipeline on a KFP cluster, or locally with kfp.local.DockerRunner where Docker runs.")


def _protojson_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, list):
        return [_protojson_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _protojson_numbers(v) for k, v in value.items()}
    return value


def as_launcher_writes_it(full_command: list[str]) -> list[str]:
    """The ``--executor_input`` JSON with numbers as KFP's launcher writes them.

    The launcher substitutes ``protojson.Marshal(executorInput)`` (backend/src/v2/component/
    launcher_v2.go): a whole double inside a struct/list value is written ``9``, not ``9.0`` as
    kfp.local's Python json_format does, so a collected ``list`` of ints reaches the component as
    ints. (kfp/dsl/executor.py relaxes float returns to accept ints for the same reason.)
    """
    command = list(full_command)
    for i, part in enumerate(command[:-1]):
        if part == "--executor_input":
            try:
                command[i + 1] = json.dumps(_protojson_numbers(json.loads(command[i + 1])))
            except ValueError:
                pass  # not JSON: leave it to the executor's own error
    return command


class ComponentTaskHandler:
    """kfp.local's SubprocessTaskHandler (same constructor and ``run``) with the pip bootstrap served here.

    :param shims_root: where per-task ``python3`` shims live (inside the run's folder).
    :param venvs_root: the venv cache (``STATE_DIR/venvs``).
    """

    def __init__(self, image: str, full_command: list[str], pipeline_root: str, runner: Any,
                 env_vars: dict[str, str] | None = None, *, shims_root: Path, venvs_root: Path) -> None:
        self.image = image
        self.full_command = full_command
        self.pipeline_root = pipeline_root
        self.runner = runner
        self.env_vars = env_vars or {}
        self.shims_root = shims_root
        self.venvs_root = venvs_root

    def run(self) -> status.Status:
        from kfp.local import status, subprocess_task_handler

        # Through the module attribute: the child captures each component's output there.
        run_process = subprocess_task_handler.run_local_subprocess
        needs = container_needs(self.full_command, self.image)
        if needs is not None:
            # Printed by the step's own process, so the message is in the step's log like any failure.
            code = run_process(["sh", "-c", 'printf "%s\\n" "$0" >&2; exit 1', needs], self.env_vars)
        else:
            with task_python(self.shims_root, self.venvs_root, self.shims_root.parent.name) as python3:
                command = subprocess_task_handler.replace_python_executable(
                    as_launcher_writes_it(self.full_command), python3)
                code = run_process(command, self.env_vars)
        return status.Status.SUCCESS if code == 0 else status.Status.FAILURE


def install(run_dir: Path) -> None:
    """Run this run's components through :class:`ComponentTaskHandler` (called once by child.py)."""
    from kfp.local import subprocess_task_handler

    state_dir = Path(run_dir).absolute().parent.parent  # the executor's layout: STATE_DIR/runs/RUN_ID
    handler = functools.partial(ComponentTaskHandler, shims_root=Path(run_dir).absolute() / "python-shims",
                                venvs_root=state_dir / "venvs")
    subprocess_task_handler.SubprocessTaskHandler = handler  # type: ignore[misc,assignment]


if __name__ == "__main__":
    sys.exit(main())
