"""The ``kfp-bridge`` command: embedded stand-ins and pipeline compilation.

Sub-commands import their implementation lazily so ``kfp-bridge --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _port(text: str) -> int:
    """A TCP port to listen on (argparse type: a bad one is refused before anything starts)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: give 1-65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number: give 1-65535")
    return port


def _port_or_zero(text: str) -> int:
    return 0 if text.strip() == "0" else _port(text)


def _existing_file(text: str) -> str:
    """A file the stand-in reads at start; a missing one would otherwise surface as a 401 per request."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file (create it first, or leave the option out)")
    return text


def _add_stand_in(
    local_sub: argparse._SubParsersAction, name: str, summary: str, *, state_dir: str, token_file: str, admin: str,
    port: str,
) -> argparse.ArgumentParser:
    """One stand-in's sub-command; the strings are the help of the command and of its options."""
    stand_in = local_sub.add_parser(name, help=summary)
    stand_in.add_argument("--host", default="127.0.0.1")
    stand_in.add_argument("--port", type=_port_or_zero if "0" in port else _port, required=True, help=port)
    stand_in.add_argument("--state-dir", required=True, help=state_dir)
    stand_in.add_argument("--token-file", type=_existing_file, help=token_file)
    stand_in.add_argument("--admin", action="store_true", help=admin)
    return stand_in


def _add_local(sub: argparse._SubParsersAction) -> None:
    local = sub.add_parser("local", help="run the embedded stand-ins (development and tests)")
    local_sub = local.add_subparsers(dest="service", required=True)

    kfp = _add_stand_in(
        local_sub,
        "kfp",
        "KFP v2beta1 API server that executes pipelines with kfp.local",
        state_dir="SQLite database and run outputs live here",
        token_file="single-user: require 'authorization: Bearer <file content>' (re-read per request); "
        "multi-user: a projected-style token of the users file's token_file_user",
        admin="enable /_admin/stats and /_admin/faults",
        port="1-65535",
    )
    kfp.add_argument(
        "--multi-user",
        action="store_true",
        help="KFP multi-user mode: namespaces required, 401 without an identity, 403 when the users file denies it",
    )
    kfp.add_argument(
        "--users",
        metavar="FILE",
        type=_existing_file,
        help="with --multi-user: YAML/JSON mapping tokens to identities and identities to namespaces "
        "(format: kfp_bridge/local/kfp/auth.py)",
    )
    kube = _add_stand_in(
        local_sub,
        "kube",
        "Kubernetes API (HTTPS) for KServe InferenceServices, with a controller and a Host-routed ingress",
        state_dir="writes DIR/kubeconfig (with the stand-in's CA) and DIR/ingress.json for clients",
        token_file="require 'authorization: Bearer <file content>'",
        admin="enable /_admin test hooks",
        port="1-65535, or 0 for a free one (the kubeconfig in --state-dir names it)",
    )
    # Each also has an environment variable KFP_BRIDGE_KUBE_<NAME> (kfp_bridge/local/kube/server.py Options).
    kube.add_argument("--domain", help="ingress domain of status.url (default example.com, as KServe)")
    kube.add_argument("--ingress-port", type=_port_or_zero, help="the ingress listener's port (default: a free one)")
    kube.add_argument("--kfp-state-dir", help="serve the KFP stand-in's executor pods and logs from this state dir")
    kube.add_argument("--rbac-policy", metavar="FILE", type=_existing_file, help="enforce RBAC from deploy/ manifests (policy file format: "
                      "kfp_bridge/local/kube/rbac.py)")
    kube.add_argument("--bookmark-interval", type=float, help="seconds between watch bookmarks (default 60)")
    kube.add_argument("--watch-window", type=float, help="seconds of watch history before 410 Gone (default 75)")
    kube.add_argument("--progress-deadline", type=int, help="Standard-mode Deployments' progressDeadlineSeconds (default 600)")

    up = local_sub.add_parser("up", help="start both stand-ins and print the AIRFLOW_CONN_* lines to use")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--kfp-port", type=_port_or_zero, default=0, help="0 picks a free port")
    up.add_argument("--kube-port", type=_port_or_zero, default=0, help="0 picks a free port")
    up.add_argument("--state-dir", default=".local-state")
    up.add_argument("--token-file", type=_existing_file, help="bearer token both stand-ins require")


def _add_compile(sub: argparse._SubParsersAction) -> None:
    comp = sub.add_parser("compile", help="compile pipeline sources to YAML beside them")
    comp.add_argument("sources", nargs="+", help="'module:function' or a .py file with one @dsl.pipeline")
    comp.add_argument("--check", action="store_true", help="exit 1 and name the file when a committed YAML is stale")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kfp-bridge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_local(sub)
    _add_compile(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "compile":
        from kfp_bridge.utils.compiling import compile_sources

        return compile_sources(args.sources, check=args.check)
    if args.service == "kfp":
        from kfp_bridge.local.kfp.auth import UsersFileError
        from kfp_bridge.local.kfp.server import serve

        if args.users and not args.multi_user:
            print("kfp-bridge local kfp: --users only applies with --multi-user", file=sys.stderr)
            return 2
        if args.multi_user and not args.users:
            print("kfp-bridge local kfp: --multi-user needs --users FILE (who may access which namespace; "
                  "format: kfp_bridge/local/kfp/auth.py)", file=sys.stderr)
            return 2
        try:
            serve(host=args.host, port=args.port, state_dir=args.state_dir, token_file=args.token_file,
                  admin=args.admin, multi_user=args.multi_user, users_file=args.users)
        except UsersFileError as exc:  # say what to fix in the file, no traceback
            print(f"kfp-bridge local kfp: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.service == "kube":
        from kfp_bridge.local.kube.server import serve

        given = {
            "domain": args.domain, "ingress_port": args.ingress_port, "kfp_state_dir": args.kfp_state_dir,
            "rbac_policy": args.rbac_policy, "bookmark_interval_s": args.bookmark_interval,
            "watch_window_s": args.watch_window, "progress_deadline_s": args.progress_deadline,
        }
        serve(host=args.host, port=args.port, state_dir=args.state_dir, token_file=args.token_file, admin=args.admin,
              **{name: value for name, value in given.items() if value is not None})
        return 0
    from kfp_bridge.local.up import run_up

    return run_up(args)


if __name__ == "__main__":
    sys.exit(main())
