"""Command line: python -m app serve|migrate|demo|ingest|users|export (see README)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.db import display_url, make_engine, make_sessionmaker, session_scope
from app.errors import DomainError
from app.migrate import upgrade
from app.settings import Settings, load_settings


def _sessions(settings: Settings):
    settings.ensure_dirs()
    upgrade(settings.database_url)
    return make_sessionmaker(make_engine(settings.database_url))


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    settings.ensure_dirs()
    upgrade(settings.database_url)
    print(f"database at revision head: {display_url(settings.database_url)}")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from app.server import ServerLimits, make_config
    from app.services.accounts.bootstrap import first_start

    factory = _sessions(settings)
    with session_scope(factory) as session:
        first_start(session, settings, demo=args.demo_on_first_start, out=print)
    print(f"MedSynth on http://{args.host}:{args.port}", flush=True)
    limits = ServerLimits(
        header_timeout_s=args.header_timeout, body_idle_timeout_s=args.body_timeout,
        keep_alive_s=args.keep_alive, limit_concurrency=args.limit_concurrency,
    )  # fmt: skip
    config = make_config(create_app(settings), args.host, args.port, limits,
                         forwarded_allow_ips=args.forwarded_allow_ips)  # fmt: skip
    uvicorn.Server(config).run()
    return 0


def _serve_limits(s: argparse.ArgumentParser) -> None:
    """Slow and greedy clients (issue 16); the README's "Security" section explains them."""
    from app.server import ServerLimits

    d = ServerLimits()
    # fmt: off
    s.add_argument("--header-timeout", type=float, default=d.header_timeout_s,
                   help="seconds a client may take to send the request line and headers")
    s.add_argument("--body-timeout", type=float, default=d.body_idle_timeout_s,
                   help="longest pause (s) between two chunks of a request body")
    s.add_argument("--keep-alive", type=int, default=d.keep_alive_s,
                   help="seconds an idle keep-alive connection stays open")
    s.add_argument("--limit-concurrency", type=int, default=d.limit_concurrency,
                   help="connections + running requests; beyond it 503")
    s.add_argument("--forwarded-allow-ips", default=None,
                   help="trust X-Forwarded-For/-Proto from these proxy addresses (e.g. 127.0.0.1)")
    # fmt: on


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from app.services.curation.demo import create_demo

    with session_scope(_sessions(settings)) as session:
        for volume in create_demo(session, settings, volumes=args.volumes, seed=args.seed):
            print(json.dumps({"id": volume.id, "name": volume.name, "shape": volume.shape}))
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from app.services.curation.ingest import ingest_paths

    factory = _sessions(settings)
    failed = 0
    with session_scope(factory) as session:
        for result in ingest_paths(
            session,
            settings,
            [Path(p) for p in args.paths],
            mask=Path(args.mask) if args.mask else None,
        ):
            failed += "error" in result
            print(json.dumps(result), flush=True)
    return 1 if failed else 0


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    from app.services.accounts.users import create_token, create_user, get_user

    with session_scope(_sessions(settings)) as session:
        if args.users_cmd == "create":
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = getpass.getpass(f"password for {args.name}: ")
            user = create_user(session, args.name, args.role, password)
            print(json.dumps({"id": user.id, "username": user.username, "role": user.role}))
        else:
            print(create_token(session, get_user(session, args.name), name="cli"))
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from app.services.curation.export import export_zip

    with session_scope(_sessions(settings)) as session:
        path = export_zip(session, settings, args.dataset_id, Path(args.out))
    print(json.dumps({"dataset_id": args.dataset_id, "path": str(path)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the web app")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--demo-on-first-start",
        action="store_true",
        help="create the admin account and demo volumes when the database is empty",
    )
    _serve_limits(s)
    s.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="upgrade the database to the newest revision").set_defaults(
        func=cmd_migrate
    )
    d = sub.add_parser("demo", help="generate and ingest deterministic CT phantom volumes")
    d.add_argument("--volumes", type=int, default=3)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo)
    i = sub.add_parser(
        "ingest",
        help="ingest NIfTI files or folders (LiTS pairs are matched), DICOM folders or zips "
        "(one volume per CT series, de-identified); one JSON line per volume or skipped item",
    )
    i.add_argument("paths", nargs="+")
    i.add_argument(
        "--mask",
        help="segmentation for a single volume (0 bg, 1 liver, 2 tumour): NIfTI, DICOM SEG, "
        "or a folder/zip with one DICOM folder per structure (liver, tumour)",
    )
    i.set_defaults(func=cmd_ingest)
    u = sub.add_parser("users", help="manage accounts")
    usub = u.add_subparsers(dest="users_cmd", required=True)
    uc = usub.add_parser("create")
    uc.add_argument("name")
    uc.add_argument("--role", choices=["admin", "reviewer"], required=True)
    uc.add_argument("--password-stdin", action="store_true")
    ut = usub.add_parser("token", help="print a new API token on the last line")
    ut.add_argument("name")
    u.set_defaults(func=cmd_users)
    e = sub.add_parser("export", help="write a dataset version's zip")
    e.add_argument("dataset_id", type=int)
    e.add_argument("--out", required=True)
    e.set_defaults(func=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    try:
        return args.func(settings, args)
    except DomainError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
