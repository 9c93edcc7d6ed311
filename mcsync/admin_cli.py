"""Every admin action as a command: ``mcsync <action> --param value``, answering JSON.

The arguments come from the action's parameter model (``group_id`` -> ``--group-id``, its
aliases too; a list takes the option once per value; a boolean is a flag), and their
values are validated by the same model as over HTTP. A string value ``@path`` is read from
that file (``--config @config.json``). A refusal prints its message on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dramatiq
import sqlalchemy as sa
from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from common.broker import build_broker, send
from common.db import migrate
from common.db.engine import create_engine, database_url
from common.messages import Message
from common.runtime import MailchimpClients, build_limiter
from common.settings import Settings
from services.admin.context import Action, ActionError, AdminContext, ParamError
from services.admin.params import parse


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    actions: typing.Mapping[str, Action],
) -> None:
    """One sub-command per action, its arguments generated from the parameter model."""
    for action in actions.values():
        parser = commands.add_parser(action.name, help=action.summary, description=action.summary)
        for name, info in action.params.model_fields.items():
            _add_argument(parser, name, info)
        parser.set_defaults(run=lambda settings, args, action=action: run(settings, action, args))


def _add_argument(parser: argparse.ArgumentParser, name: str, info: FieldInfo) -> None:
    names = [name]
    if isinstance(info.validation_alias, AliasChoices):
        names += [c for c in info.validation_alias.choices if isinstance(c, str) and c != name]
    flags = [f"--{n.replace('_', '-')}" for n in names]
    kinds = set(_kinds(info.annotation))
    help_text = (info.description or "") + (" (required)" if info.is_required() else "")
    if kinds <= {bool, type(None)}:
        parser.add_argument(*flags, dest=name, action="store_true", default=None, help=help_text)
    elif list in kinds:
        help_text += " (repeat for several)"
        parser.add_argument(*flags, dest=name, action="append", metavar="VALUE", help=help_text)
    else:
        parser.add_argument(*flags, dest=name, metavar="VALUE", help=help_text)


def _kinds(annotation: Any) -> Iterator[Any]:
    """The plain types a (possibly Annotated, Optional or union) annotation allows."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _kinds(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _kinds(arg)
    else:
        yield origin or annotation


def run(settings: Settings, action: Action, args: argparse.Namespace) -> int:
    """Validate the arguments, run the action, print its JSON answer (or the refusal)."""
    services: CliServices | None = None
    try:
        params = parse(action.params, _given(action, args))
        services = CliServices.build(settings)
        result = action.run(services.context(), params)
    except ActionError as error:
        print(f"mcsync {action.name}: {error.message}", file=sys.stderr)
        return 2
    finally:
        if services is not None:
            services.close()
    print(json.dumps(result, indent=2, default=str))
    return 0


def _given(action: Action, args: argparse.Namespace) -> dict[str, Any]:
    given = {
        name: getattr(args, name)
        for name in action.params.model_fields
        if getattr(args, name, None) is not None
    }
    return {name: _from_file(name, value) for name, value in given.items()}


def _from_file(name: str, value: Any) -> Any:
    if not (isinstance(value, str) and value.startswith("@")):
        return value
    try:
        return Path(value[1:]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ParamError(f"{name}: cannot read {value[1:]!r}: {error}", name) from None


@dataclass
class CliServices:
    """What an action needs in a one-shot command: an engine, Mailchimp clients behind the
    connection limit, and a broker built only if the action sends a message."""

    settings: Settings
    engine: sa.Engine
    mailchimp: MailchimpClients
    _broker: dramatiq.Broker | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings) -> CliServices:
        """Raises SchemaNotCurrent when the database is not migrated to the code's head."""
        url = database_url(settings)
        migrate.require_current(url)
        clients = MailchimpClients(settings, build_limiter(settings))
        return cls(settings, create_engine(url), clients)

    def context(self) -> AdminContext:
        return AdminContext(
            settings=self.settings,
            engine=self.engine,
            mailchimp=self.mailchimp,
            send=self.send,
            clock=lambda: datetime.now(UTC),
        )

    def send(self, *messages: Message) -> None:
        if self.settings.embedded_broker:
            print(
                "note: MCSYNC_BROKER_URL is not set, so no worker will receive "
                f"{len(messages)} message(s); with the embedded default, run the workers "
                "with `mcsync serve` and call the action through its admin API",
                file=sys.stderr,
            )
        with self._lock:
            if self._broker is None:
                self._broker = build_broker(self.settings)
        send(self._broker, *messages)

    def close(self) -> None:
        self.mailchimp.close()
        if self._broker is not None:
            self._broker.close()
        self.engine.dispose()
