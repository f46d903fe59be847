"""docker-compose.yml, Dockerfile and .env.example, checked statically.

NOT STARTED HERE: this machine has no container engine (no Docker, no Podman), so the stack itself
is never built or run by the test suite. What is checked instead: the file validates against the
Compose Specification JSON schema (vendored by check-jsonschema from PyPI), has the official
Airflow 3 shape (x-airflow-common, postgres, airflow-init, api-server, scheduler, dag-processor,
triggerer, each with a healthcheck), builds this repository's Dockerfile, mounts dags/ and
plugins/, runs the stand-ins under the ``standins`` profile, and holds no secret value; the
Dockerfile's base image matches the Airflow version in uv.lock and its constraints export works.
`make up` (tests/integration/test_make_up.py) runs the same services without containers.
The secret check airflow-init runs first (scripts/check_airflow_secrets.py) is run here for real as a
plain process: tests/deploy/test_check_airflow_secrets.py.
"""

from __future__ import annotations

import json
import re
import runpy
import shlex
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer")
STANDINS = ("standins-init", "kfp-standin", "kube-standin", "standins-seed")
SECRET_KEY = re.compile(r"(PASSWORD|SECRET|FERNET|TOKEN|_KEY$)", re.IGNORECASE)
PLACEHOLDER_SECRETS = {"", "change-me"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_says_the_stack_is_not_started_here(capsys):
    with capsys.disabled():
        print("\n  docker-compose.yml: validated statically only; no container engine here, the stack is not started")
    assert "NOT STARTED HERE" in (__doc__ or "")


def test_validates_against_the_compose_spec(compose):
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    jsonschema.validators.validator_for(schema)(schema).validate(compose)
    broken = {**compose, "services": {**compose["services"], "postgres": {**compose["services"]["postgres"],
                                                                           "healthcheck": {"test": 42}}}}
    with pytest.raises(jsonschema.ValidationError):  # the schema is not vacuous
        jsonschema.validators.validator_for(schema)(schema).validate(broken)


def test_official_airflow3_shape_with_healthchecks(compose):
    services = compose["services"]
    assert "x-airflow-common" in compose
    assert set(services) == {"postgres", *AIRFLOW_SERVICES, *STANDINS}
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES}
    assert commands == {"airflow-init": "version", "airflow-apiserver": "api-server",
                        "airflow-scheduler": "scheduler", "airflow-dag-processor": "dag-processor",
                        "airflow-triggerer": "triggerer"}
    # Only airflow-init replaces the image's entrypoint (/usr/bin/dumb-init -- /entrypoint).
    assert [name for name in services if "entrypoint" in services[name]] == ["airflow-init"]
    for name, service in services.items():
        test = (service.get("healthcheck") or {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    assert "TriggererJob" in " ".join(services["airflow-triggerer"]["healthcheck"]["test"])
    assert "DagProcessorJob" in " ".join(services["airflow-dag-processor"]["healthcheck"]["test"])
    assert _env(services["airflow-init"])["_AIRFLOW_DB_MIGRATE"] == "true"
    for name in AIRFLOW_SERVICES[1:]:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_airflow_init_checks_the_secrets_before_the_image_entrypoint_migrates(compose):
    init = compose["services"]["airflow-init"]
    dumb_init, dashes, bash, flag, script, arg0 = init["entrypoint"]
    assert (dumb_init, dashes, bash, flag, arg0) == ("/usr/bin/dumb-init", "--", "bash", "-c", "airflow-init")
    # `$$` is compose's escape for `$`: the shell sees "$@", i.e. the command (version).
    check, _, rest = script.partition(" && ")
    assert rest == 'exec /entrypoint "$$@"'
    assert check == "python /opt/kfp-bridge/check_airflow_secrets.py"
    assert "./scripts/check_airflow_secrets.py:/opt/kfp-bridge/check_airflow_secrets.py:ro" in init["volumes"]
    assert (ROOT / "scripts" / "check_airflow_secrets.py").is_file()
    # The check sees every secret it checks (POSTGRES_PASSWORD is otherwise only inside the DB URL).
    names = runpy.run_path(str(ROOT / "scripts" / "check_airflow_secrets.py"))
    env = _env(init)
    for name in (*names["RANDOM_SECRETS"], names["FERNET_KEY"]):
        assert env[name] == f"${{{name}:?set {name} in .env}}", name
    # Every other Airflow service waits for airflow-init to succeed, so a refused secret stops the stack.
    for name in AIRFLOW_SERVICES[1:]:
        assert compose["services"][name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_base_image_digest_is_required_and_passed_to_every_build(compose):
    builds = [compose["x-airflow-common"]["build"]] + [s["build"] for s in compose["services"].values() if "build" in s]
    for build in builds:
        assert re.fullmatch(r"\$\{AIRFLOW_IMAGE_DIGEST:\?[^}]+\}", build["args"]["AIRFLOW_IMAGE_DIGEST"]), build
    assert _dotenv(ROOT / ".env.example")["AIRFLOW_IMAGE_DIGEST"] == ""  # unset until looked up: compose refuses


def test_builds_the_dockerfile_and_mounts_dags_and_plugins(compose):
    common = compose["x-airflow-common"]
    assert {k: v for k, v in common["build"].items() if k != "args"} == {
        "context": ".", "dockerfile": "Dockerfile", "target": "airflow"}
    assert (ROOT / common["build"]["dockerfile"]).is_file()
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert service["build"] == common["build"], name
        volumes = service["volumes"]
        assert set(common["volumes"]) <= set(volumes), name
        assert "./dags:/opt/airflow/dags:ro" in volumes and "./plugins:/opt/airflow/plugins:ro" in volumes
        env = _env(service)
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert service["env_file"] == [{"path": ".env", "required": True}]
    dockerfile_targets = re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    for service in compose["services"].values():
        if "build" in service:
            assert service["build"]["target"] in dockerfile_targets


def test_standins_profile_runs_the_embedded_stand_ins(compose):
    services = compose["services"]
    for name in STANDINS:
        assert services[name]["profiles"] == ["standins"], name
    for name in ("postgres", *AIRFLOW_SERVICES):
        assert "profiles" not in services[name], f"{name} must run without a profile"
        # A dependency on a profile service would break `docker compose up` without the profile.
        assert not set(services[name].get("depends_on") or {}) & set(STANDINS), name
    kfp = shlex.split(services["kfp-standin"]["command"][-1])
    kube = shlex.split(services["kube-standin"]["command"][-1])
    assert kfp[:4] == ["exec", "kfp-bridge", "local", "kfp"] and kube[:4] == ["exec", "kfp-bridge", "local", "kube"]
    # The .env.example connections point at these services, the token and kubeconfig they write.
    env = _dotenv(ROOT / ".env.example")
    kfp_conn, kube_conn = json.loads(env["AIRFLOW_CONN_KFP_DEFAULT"]), json.loads(env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    assert kfp_conn["host"] == f"http://{kfp[kfp.index('--host') + 1]}:{kfp[kfp.index('--port') + 1]}"
    assert kfp_conn["extra"]["token_path"] == kfp[kfp.index("--token-file") + 1]
    assert kube_conn["extra"]["kube_config_path"] == f"{kube[kube.index('--state-dir') + 1]}/kubeconfig"


def _dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


def test_no_secret_values(compose):
    """Secrets come from .env (required, no defaults); the committed example holds placeholders only."""
    def walk(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}[{i}]")
        else:
            yield path, node

    for path, value in walk(compose):
        key = path.rsplit(".", 1)[-1]
        if SECRET_KEY.search(key) and isinstance(value, str):
            assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", value), f"{path} must come from .env, got {value!r}"
    conn = _env(compose["x-airflow-common"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "${POSTGRES_PASSWORD:?" in conn
    example = _dotenv(ROOT / ".env.example")
    for key, value in example.items():
        if SECRET_KEY.search(key):
            assert value in PLACEHOLDER_SECRETS, f".env.example {key} holds a value, not a placeholder"
        if key.startswith("AIRFLOW_CONN_"):
            assert "password" not in json.loads(value), f"{key}: no static token in the example"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_dockerfile_installs_locked_versions_on_the_official_image():
    dockerfile = (ROOT / "Dockerfile").read_text()
    image = re.search(r"^ARG AIRFLOW_IMAGE=(\S+)$", dockerfile, re.MULTILINE).group(1)
    match = re.fullmatch(r"apache/airflow:(3\.3\.\d+)-python3\.11", image)
    assert match, f"base image {image} is not the official apache/airflow 3.3.x Python 3.11 image"
    # Pinned by digest, the tag beside it; the digest is a required build argument (no default).
    assert re.search(r"^ARG AIRFLOW_IMAGE_DIGEST$", dockerfile, re.MULTILINE)
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    stages = re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.MULTILINE)
    assert all(f in stages or f == "${AIRFLOW_IMAGE}@${AIRFLOW_IMAGE_DIGEST}" for f in froms), froms
    uv_version = re.search(r"^ARG UV_VERSION=(\S+)$", dockerfile, re.MULTILINE).group(1)
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    assert uv_version == makefile_uv
    export = re.search(r"RUN (uv export [^\n]+) -o /tmp/kfp-bridge/requirements.txt", dockerfile).group(1)
    assert "--frozen" in export and "--no-dev" in export and "--no-hashes" not in export
    # pip verifies every download against the lock's hashes; kfp-bridge's own wheel adds no dependency.
    assert "pip install --no-cache-dir --no-deps --require-hashes -r /opt/kfp-bridge/requirements.txt" in dockerfile
    assert "pip install --no-cache-dir --no-deps --require-hashes -r /opt/kfp-bridge/requirements-standins.txt" in dockerfile
    assert "pip install --no-cache-dir --no-deps /opt/kfp-bridge/dist/*.whl" in dockerfile
    # The same export, here: it must work from the committed lock file alone and pin the image's Airflow.
    uv = ROOT / ".tools" / "bin" / "uv"
    if not uv.exists():
        pytest.skip("uv is bootstrapped by `make test` into .tools/")
    out = subprocess.run([str(uv), *shlex.split(export)[1:]], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", out, re.MULTILINE))
    assert pins["apache-airflow"] == match.group(1), "the base image must match the locked apache-airflow"
    requirements = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", out.split("\n", 2)[2].lstrip())
    unhashed = [r.split()[0] for r in requirements if r.strip() and "--hash=sha256:" not in r]
    assert len(requirements) == len(re.findall(r"^[A-Za-z0-9_.-]+==", out, re.MULTILINE)) >= len(pins) > 100
    assert unhashed == [], f"requirements without hashes: {unhashed}"
    assert "kfp-server-api" in pins and "apache-airflow-providers-cncf-kubernetes" in pins and "scikit-learn" in pins
    assert "kfp" not in pins, "the kfp SDK (and its pins) stays out of the Airflow image"
    assert "pytest" not in pins, "dev dependencies must not reach the image"
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert ignored[0] == "*" and {"!pyproject.toml", "!uv.lock", "!kfp_bridge/"} <= set(ignored)
