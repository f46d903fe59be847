"""Every command in the deployment docs' ``bash`` blocks is exercised or checked by a test.

Each command line is matched to a checker below; a command no checker knows fails the test, so a
new command in the docs needs a test. Commands that need a cluster or a container engine (neither
exists here) are checked against the files they use: the manifests render with exactly the
exported variables (through the real ``envsubst`` when installed) and validate; the compose
profile, services and volumes they name exist. `make up` / `make down` and the REST calls run for
real in tests/integration/test_make_up.py.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import PLACEHOLDERS, ROOT, load, placeholders_in, validate

DOCS = (ROOT / "docs" / "deployment.md", ROOT / "docs" / "runbook-real-cluster.md")
MAKE_UP_TEST = ROOT / "tests" / "integration" / "test_make_up.py"


def documented_commands() -> list[tuple[str, str]]:
    commands = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.DOTALL):
            commands += [(doc.name, line.strip()) for line in block.splitlines() if line.strip()]
    return commands


def _exports(doc: str) -> dict[str, str]:
    text = (ROOT / "docs" / doc).read_text()
    line = next(c for d, c in documented_commands() if d == doc and c.startswith("export "))
    assert line in text
    return dict(word.split("=", 1) for word in shlex.split(line)[1:])


def check_make(doc: str, command: str) -> None:
    target = command.split()[1]
    assert f'_make("{target}"' in MAKE_UP_TEST.read_text(), f"{MAKE_UP_TEST.name} must run `{command}`"


def check_rest_call(doc: str, command: str) -> None:
    # Run for real against the `make up` stack in tests/integration/test_make_up.py.
    assert "rest_commands(" in MAKE_UP_TEST.read_text()
    assert "http://127.0.0.1:8080/" in command


def check_export(doc: str, command: str) -> None:
    assert _exports(doc) .keys() == PLACEHOLDERS.keys(), "export exactly the manifests' placeholders"


def check_envsubst_apply(doc: str, command: str) -> None:
    path = ROOT / re.search(r"envsubst < (\S+) \| kubectl apply -f -", command).group(1)
    values = _exports(doc)
    assert placeholders_in(path.read_text()) <= values.keys()
    docs = load(path, values)
    for resource in docs:
        validate(resource)
    if shutil.which("envsubst"):
        rendered = subprocess.run(["envsubst"], input=path.read_text(), env=values, capture_output=True,
                                  text=True, check=True).stdout
        assert [d for d in yaml.safe_load_all(rendered) if d] == docs


def check_helm(doc: str, command: str) -> None:
    args = shlex.split(command)
    assert args[:4] == ["helm", "upgrade", "--install", "airflow"] and args[4] == "apache-airflow/airflow"
    values = ROOT / args[args.index("-f") + 1]
    assert set(yaml.safe_load(values.read_text())) >= {"workers", "triggerer"}  # checked in test_k8s_manifests


def check_compose(doc: str, command: str) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    args = shlex.split(command.split("|")[0])
    if args[:2] == ["cp", ".env.example"]:
        assert (ROOT / ".env.example").is_file() and args[2] == ".env"
        return
    assert args[:2] == ["docker", "compose"]
    rest = args[2:]
    if rest[:1] == ["--profile"]:
        profile = rest[1]
        assert any(profile in (s.get("profiles") or []) for s in compose["services"].values()), profile
        rest = rest[2:]
    if rest[0] == "logs":
        assert rest[1] in compose["services"]
    elif rest[0] == "down":
        assert "-v" in rest and compose["volumes"], "down -v removes the named volumes"
    else:
        assert rest == ["up", "-d"], command


def check_can_i(doc: str, command: str) -> None:
    args = shlex.split(command)
    verb, resource = args[args.index("can-i") + 1: args.index("can-i") + 3]
    namespace = args[args.index("-n", args.index("can-i")) + 1]
    subject = args[args.index("--as") + 1]
    assert subject == "system:serviceaccount:$AIRFLOW_NAMESPACE:airflow-kfp-bridge"
    if resource == "inferenceservices.serving.kserve.io":
        (role,) = [d for d in load(ROOT / "deploy" / "rbac" / "kserve-rollout.yaml") if d["kind"] == "Role"]
        assert namespace == "$SERVING_NAMESPACE" and verb in role["rules"][0]["verbs"]
    else:
        assert resource.endswith(".pipelines.kubeflow.org") and namespace == "$PROFILE_NAMESPACE"
        bindings = [d for d in load(ROOT / "deploy" / "rbac" / "kfp-profile-access.yaml")
                    if d["kind"] == "RoleBinding" and d["roleRef"]["kind"] == "ClusterRole"]
        workers = [b for b in bindings if any(s["name"] == "airflow-kfp-bridge" for s in b["subjects"])]
        assert [b["roleRef"]["name"] for b in workers] == ["kubeflow-pipelines-edit"]


CHECKERS: list[tuple[str, Callable[[str, str], None]]] = [
    (r"^make (up|down)$", check_make),
    (r"^(TOKEN=\$\(curl|curl -s -X POST http://127\.0\.0\.1:8080/api/v2/)", check_rest_call),
    (r"^export ", check_export),
    (r"^envsubst < ", check_envsubst_apply),
    (r"^helm ", check_helm),
    (r"^(docker compose|cp \.env\.example)", check_compose),
    (r"^kubectl .* auth can-i ", check_can_i),
]


@pytest.mark.parametrize(("doc", "command"), documented_commands(), ids=lambda v: v[:60])
def test_documented_command_is_covered(doc: str, command: str):
    matches = [check for pattern, check in CHECKERS if re.search(pattern, command)]
    assert matches, f"{doc}: no test covers `{command}`; add a checker in {Path(__file__).name}"
    matches[0](doc, command)


def test_docs_hold_the_commands():
    commands = [c for _, c in documented_commands()]
    assert {"make up", "make down", "docker compose --profile standins up -d"} <= set(commands)
    assert len(commands) >= 15
