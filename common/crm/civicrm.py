"""CiviCRM's own database (MySQL or MariaDB) as the CRM: connecting, and checking it is fit.

``MCSYNC_CRM_URL`` names it (``mysql://user:pw@host:3306/civicrm``). ``check`` says whether
it answers, which CiviCRM it holds, whether the tables and columns the sync reads and writes
are there, and whether the sync's database user may do what it needs; every problem is one
line naming what is missing. The tables are CiviCRM's: nothing here creates or alters them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from common.outages import describe
from common.settings import masked

CONNECT_TIMEOUT = 5  # seconds
UTC_SESSION = "SET time_zone = '+00:00'"

# What the sync reads and writes in CiviCRM, per table: the columns, and the privileges.
NEEDED_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "civicrm_contact": (
        "id",
        "contact_type",
        "first_name",
        "last_name",
        "display_name",
        "sort_name",
        "source",
        "is_deleted",
        "created_date",
        "modified_date",
    ),
    "civicrm_email": (
        "id",
        "contact_id",
        "email",
        "is_primary",
        "is_bulkmail",
        "on_hold",
        "hold_date",
    ),
    "civicrm_group": ("id", "name", "title"),
    "civicrm_group_contact": ("id", "group_id", "contact_id", "status"),
    "civicrm_subscription_history": (
        "id",
        "contact_id",
        "group_id",
        "date",
        "method",
        "status",
        "tracking",
    ),
}
NEEDED_PRIVILEGES: Mapping[str, tuple[str, ...]] = {
    "civicrm_contact": ("SELECT", "INSERT", "UPDATE"),  # new contacts; names from webhooks
    "civicrm_email": ("SELECT", "INSERT", "UPDATE"),  # addresses on hold; upemail
    "civicrm_group": ("SELECT",),
    "civicrm_group_contact": ("SELECT", "INSERT", "UPDATE"),  # memberships
    "civicrm_subscription_history": ("SELECT", "INSERT"),  # a row per membership change
}


def crm_engine(url: str) -> sa.Engine:
    """An engine on CiviCRM's database (PyMySQL; utf8mb4, as CiviCRM's tables are), each
    session in UTC: CiviCRM's TIMESTAMP columns are read and written as UTC."""
    parsed = sa.make_url(url).set(drivername="mysql+pymysql")
    query = dict(parsed.query) | {"charset": "utf8mb4"}
    return sa.create_engine(
        parsed.set(query=query),
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": CONNECT_TIMEOUT, "init_command": UTC_SESSION},
    )


def where(engine: sa.Engine) -> str:
    """The CRM's URL with its password masked."""
    url = engine.url.set(drivername="mysql").difference_update_query(["charset"])
    return masked(url.render_as_string(hide_password=False))


@dataclass(frozen=True)
class CrmCheck:
    """What ``check`` found: ``problems`` is empty when the sync can work with this CRM."""

    where: str
    server: str = ""
    civicrm_version: str = ""
    tables: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)

    @property
    def fit(self) -> bool:
        return not self.problems


def check(engine: sa.Engine) -> CrmCheck:
    """Whether the CRM answers and holds what the sync needs, and may be written as it must."""
    found_where = where(engine)
    try:
        with engine.connect() as conn:
            server = str(conn.execute(sa.text("SELECT VERSION()")).scalar_one())
            columns = _columns(conn)
            version = _civicrm_version(conn, columns)
            granted = _privileges(conn)
    except sa.exc.SQLAlchemyError as error:
        return CrmCheck(found_where, problems=[f"the CRM at {found_where} {_reason(error)}"])
    problems = _missing_columns(columns) + _missing_privileges(granted)
    tables = tuple(name for name in NEEDED_COLUMNS if name in columns)
    return CrmCheck(found_where, server, version, tables, problems)


# MySQL's error codes, as one would say them: a login refused (user, database), a database
# that is not there, a server that does not answer or went away.
_SAID = {
    1044: "refused the login",
    1045: "refused the login",
    1049: "has no such database",
    2003: "does not answer",
    2005: "does not answer (unknown host)",
    2006: "went away",
    2013: "went away",
}


def _reason(error: sa.exc.SQLAlchemyError) -> str:
    args: tuple[object, ...] = tuple(getattr(getattr(error, "orig", None), "args", ()))
    if len(args) >= 2 and args[0] in _SAID:
        return f"{_SAID[args[0]]} ({args[1]})"
    return describe(error)


def _columns(conn: sa.Connection) -> dict[str, set[str]]:
    rows = conn.execute(
        sa.text(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN :tables"
        ).bindparams(sa.bindparam("tables", expanding=True)),
        {"tables": list(NEEDED_COLUMNS)},
    )
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(str(table), set()).add(str(column).lower())
    return found


def _civicrm_version(conn: sa.Connection, columns: Mapping[str, set[str]]) -> str:
    """CiviCRM keeps its version in ``civicrm_domain.version`` (absent in a bare schema)."""
    has_domain = conn.execute(
        sa.text(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'civicrm_domain' AND COLUMN_NAME = 'version'"
        )
    ).scalar_one()
    if not has_domain:
        return ""
    found = conn.execute(sa.text("SELECT version FROM civicrm_domain ORDER BY id LIMIT 1"))
    return str(found.scalar_one_or_none() or "")


def _missing_columns(found: Mapping[str, set[str]]) -> list[str]:
    problems = []
    for table, needed in NEEDED_COLUMNS.items():
        if table not in found:
            problems.append(f"no table {table}: is this CiviCRM's database?")
            continue
        missing = [column for column in needed if column not in found[table]]
        if missing:
            problems.append(f"{table} lacks the column(s) {', '.join(missing)}")
    return problems


# The current user's grants, as information_schema lists them: global, on the database (a
# pattern, as GRANT wrote it), and on single tables. Grants through roles are not listed.
_GRANTS = sa.text("""
    SELECT '*' AS table_name, PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES
    WHERE GRANTEE = :grantee
    UNION ALL
    SELECT '*', PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES
    WHERE GRANTEE = :grantee AND DATABASE() LIKE TABLE_SCHEMA
    UNION ALL
    SELECT TABLE_NAME, PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES
    WHERE GRANTEE = :grantee AND TABLE_SCHEMA = DATABASE()
""")


def _privileges(conn: sa.Connection) -> dict[str, set[str]]:
    user, _, host = str(conn.execute(sa.text("SELECT CURRENT_USER()")).scalar_one()).rpartition("@")
    granted: dict[str, set[str]] = {}
    for table, privilege in conn.execute(_GRANTS, {"grantee": f"'{user}'@'{host}'"}):
        granted.setdefault(str(table), set()).add(str(privilege).upper())
    return granted


def _missing_privileges(granted: Mapping[str, set[str]]) -> list[str]:
    everywhere = granted.get("*", set())
    if "ALL PRIVILEGES" in everywhere:
        return []
    problems = []
    for table, needed in NEEDED_PRIVILEGES.items():
        held = everywhere | granted.get(table, set())
        missing = [privilege for privilege in needed if privilege not in held]
        if missing:
            problems.append(f"the CRM's user may not {', '.join(missing)} on {table}")
    return problems


GROUPS = sa.text(
    "SELECT id, title FROM civicrm_group WHERE is_active = 1 AND saved_search_id IS NULL "
    "ORDER BY title, id"
)


def groups(engine: sa.Engine) -> list[tuple[int, str]]:
    """CiviCRM's active groups that hold their members (not smart groups), by title."""
    with engine.connect() as conn:
        return [(int(row.id), str(row.title)) for row in conn.execute(GROUPS)]


def missing_groups(engine: sa.Engine, group_ids: Iterable[int]) -> list[int]:
    """Those of ``group_ids`` that are not groups in CiviCRM's ``civicrm_group``, ascending."""
    wanted = sorted(set(group_ids))
    if not wanted:
        return []
    with engine.connect() as conn:
        found = {
            int(row[0])
            for row in conn.execute(
                sa.text("SELECT id FROM civicrm_group WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": wanted},
            )
        }
    return [group_id for group_id in wanted if group_id not in found]
