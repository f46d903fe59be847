"""Token authentication and RBAC authorization, as the apiserver does them (off unless configured).

Request attributes follow ``k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`` (verb from the
method, ``list``/``watch``/``deletecollection``, subresources such as ``pods/log``, the name of a
``fieldSelector=metadata.name=X`` watch); rules match as in
``plugin/pkg/auth/authorizer/rbac/rbac.go`` (``RuleAllows``: verbs, apiGroups, resources incl.
``*`` and ``*/sub``, resourceNames). Roles and bindings come from the manifests in ``deploy/``.

Policy file (YAML or JSON)::

    identities:                       # bearer token -> who it is
      <token>: {user: "system:serviceaccount:airflow:airflow-kfp-bridge", groups: [...]}
    manifests: [deploy/rbac/kserve-rollout.yaml]   # Role/ClusterRole/RoleBinding/ClusterRoleBinding
    substitutions: {SERVING_NAMESPACE: default, AIRFLOW_NAMESPACE: airflow}   # ${VAR} in manifests

The ``--token-file`` token stays an administrator (group ``system:masters``), so set-up and test
code keep working while the identities under test are held to their Roles.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml

from kfp_bridge.local.kube import errors

MASTERS = "system:masters"
READ_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attributes:
    """What the authorizer decides on; ``resource == ""`` means a non-resource path."""

    verb: str
    path: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def identity_for(user: str, groups: list[str] | tuple[str, ...] = ()) -> Identity:
    """Service accounts get the groups the token authenticator adds."""
    extra = ["system:authenticated"]
    if user.startswith("system:serviceaccount:"):
        ns = user.split(":")[2]
        extra = ["system:serviceaccounts", f"system:serviceaccounts:{ns}", *extra]
    return Identity(user, tuple(dict.fromkeys([*groups, *extra])))


def request_attributes(method: str, path: str, query: str) -> Attributes:
    """requestinfo.go for the paths this stand-in serves."""
    params = parse_qs(query)
    parts = [p for p in path.strip("/").split("/") if p]
    verb = READ_VERBS.get(method.upper(), method.lower())
    if len(parts) >= 2 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return Attributes(verb, path)
    if not rest:
        return Attributes(verb, path)  # /api/v1, /apis/g/v: discovery
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        return Attributes(verb, path, group, "namespaces", "", "", rest[1])
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    watch = (params.get("watch") or ["false"])[0].lower() in ("true", "1")
    if not name:
        if verb == "get":
            verb = "watch" if watch else "list"
        elif verb == "delete":
            verb = "deletecollection"
        if verb in ("list", "watch"):
            # A single-object list/watch is authorized for that name (requestinfo.go).
            for selector in params.get("fieldSelector") or []:
                if selector.startswith("metadata.name=") and "," not in selector:
                    name = selector.split("=", 1)[1]
    return Attributes(verb, path, group, resource, subresource, namespace, name)


def _allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if attrs.resource == "":
        urls = rule.get("nonResourceURLs") or []
        return (attrs.verb in verbs or "*" in verbs) and any(
            u == attrs.path or u == "*" or (u.endswith("*") and attrs.path.startswith(u[:-1])) for u in urls
        )
    if not (attrs.verb in verbs or "*" in verbs):
        return False
    groups = rule.get("apiGroups") or []
    if not (attrs.group in groups or "*" in groups):
        return False
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resources = rule.get("resources") or []
    if not any(
        r == "*" or r == combined or (attrs.subresource and r == f"*/{attrs.subresource}") for r in resources
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


@dataclass
class Policy:
    """Roles, bindings and token identities; :meth:`authorize` is the RBAC authorizer."""

    identities: dict[str, Identity] = field(default_factory=dict)
    roles: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)  # (ns, name)
    cluster_roles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    bindings: list[dict[str, Any]] = field(default_factory=list)  # RoleBinding + ClusterRoleBinding

    @classmethod
    def load(cls, path: Path, base: Path | None = None) -> Policy:
        config = yaml.safe_load(path.read_text()) or {}
        policy = cls()
        for token, who in (config.get("identities") or {}).items():
            policy.identities[str(token)] = identity_for(who["user"], who.get("groups") or [])
        subs = {k: str(v) for k, v in (config.get("substitutions") or {}).items()}
        for manifest in config.get("manifests") or []:
            file = Path(manifest)
            if not file.is_absolute():
                file = (base or path.parent) / file
            text = string.Template(file.read_text()).safe_substitute(subs)
            for doc in yaml.safe_load_all(text):
                if doc:
                    policy.add(doc)
        for doc in config.get("objects") or []:
            policy.add(doc)
        return policy

    def add(self, doc: dict[str, Any]) -> None:
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        if kind == "Role":
            self.roles[(meta.get("namespace", "default"), meta["name"])] = doc.get("rules") or []
        elif kind == "ClusterRole":
            self.cluster_roles[meta["name"]] = doc.get("rules") or []
        elif kind in ("RoleBinding", "ClusterRoleBinding"):
            self.bindings.append(doc)
        elif kind == "List":
            for item in doc.get("items") or []:
                self.add(item)

    def _subject_matches(self, subject: dict[str, Any], who: Identity) -> bool:
        kind = subject.get("kind")
        if kind == "ServiceAccount":
            return who.user == f"system:serviceaccount:{subject.get('namespace', '')}:{subject.get('name')}"
        if kind == "User":
            return who.user == subject.get("name")
        if kind == "Group":
            return subject.get("name") in who.groups
        return False

    def authorize(self, who: Identity, attrs: Attributes) -> bool:
        if MASTERS in who.groups:
            return True
        if attrs.resource == "" and attrs.verb == "get" and not attrs.path.startswith("/_admin"):
            return True  # system:discovery / system:public-info-viewer, bound to every authenticated user
        for binding in self.bindings:
            if not any(self._subject_matches(s, who) for s in binding.get("subjects") or []):
                continue
            ref = binding.get("roleRef") or {}
            meta = binding.get("metadata") or {}
            if binding["kind"] == "RoleBinding":
                ns = meta.get("namespace", "default")
                if attrs.namespace != ns:
                    continue  # a RoleBinding grants only inside its namespace
                rules = (
                    self.roles.get((ns, ref.get("name")), [])
                    if ref.get("kind") == "Role"
                    else self.cluster_roles.get(ref.get("name"), [])
                )
            else:
                rules = self.cluster_roles.get(ref.get("name"), [])
            if any(_allows(rule, attrs) for rule in rules):
                return True
        return False

    def check(self, who: Identity, attrs: Attributes) -> None:
        """Raise the apiserver's 403 when ``who`` may not do ``attrs``."""
        if self.authorize(who, attrs):
            return
        if attrs.resource == "":
            raise errors.KubeApiError(
                403, "Forbidden", f'forbidden: User "{who.user}" cannot {attrs.verb} path "{attrs.path}"'
            )
        raise errors.forbidden(
            who.user, attrs.verb, attrs.resource, attrs.subresource, attrs.group, attrs.namespace or None, attrs.name
        )
