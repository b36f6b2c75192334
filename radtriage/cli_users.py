"""``radtriage users add|list|disable``: named users with a role and a personal API token."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from db.audit import AuditAction, record
from db.users import Role, UserError, add_user, disable_user, list_users
from radtriage.cli_options import config_option, load_cli_settings

__all__ = ["cli_actor", "migrated_session", "users"]


@contextmanager
def migrated_session(config_file: str | None) -> Iterator[Session]:
    """A session on the settings' database, brought to the newest schema first; commits on success."""
    from db.session import make_engine, make_session_factory, migrate

    engine = make_engine(load_cli_settings(config_file).effective_database_url)
    try:
        migrate(engine)
        with make_session_factory(engine)() as session, session.begin():
            yield session
    finally:
        engine.dispose()


def cli_actor() -> str:
    """Who the audit trail names for an action taken at the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (e.g. a container's anonymous uid)
        return "cli"


@click.group()
def users() -> None:
    """Named users of the worklist API and page (roles: reader, admin)."""


@users.command("add")
@config_option
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True,
              help="reader: worklist, studies, claim/release/read; admin: also release anyone's claim")
def add(config_file: str | None, name: str, role: str) -> None:
    """Add NAME and print their personal API token (shown this once; only its hash is kept)."""
    try:
        with migrated_session(config_file) as session:
            token = add_user(session, name=name, role=role)
            record(session, user=cli_actor(), action=AuditAction.USER_ADD, detail=f"{name} as {role}")
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"added {name} ({role}); their API token, shown only now:", err=True)
    click.echo(token)


@users.command("list")
@config_option
def list_(config_file: str | None) -> None:
    """List every user: name, role, state, created."""
    with migrated_session(config_file) as session:
        rows = list_users(session)
    for row in rows:
        state = "enabled" if row.enabled else f"disabled {row.disabled_at:%Y-%m-%dT%H:%MZ}"
        click.echo(f"{row.name}\t{row.role.value}\t{state}\tcreated {row.created_at:%Y-%m-%dT%H:%MZ}")


@users.command("disable")
@config_option
@click.argument("name")
def disable(config_file: str | None, name: str) -> None:
    """Disable NAME: their token stops working at once (the name stays in the audit trail)."""
    try:
        with migrated_session(config_file) as session:
            changed = disable_user(session, name=name)
            if changed:
                record(session, user=cli_actor(), action=AuditAction.USER_DISABLE, detail=name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{name} disabled" if changed else f"{name} was already disabled")
