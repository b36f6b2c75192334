"""Named users and their roles; personal API tokens are shown once and only their hash is kept."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import UserAccount, as_utc, utcnow

__all__ = [
    "TOKEN_PREFIX", "Role", "UserError", "UserRow", "add_user", "any_user", "disable_user", "list_users",
    "token_digest", "user_for_token",
]

# Lets a leaked token be recognised (secret scanners, logs) and tells it apart from a JWT.
TOKEN_PREFIX = "rt_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class Role(StrEnum):
    """What a user may do: a reader reads the worklist and acts on studies; an admin also
    releases anyone's claim and administers users."""

    READER = "reader"
    ADMIN = "admin"

    def allows(self, needed: Role | str) -> bool:
        """Whether this role may do what ``needed`` may (an admin may do what a reader may)."""
        return self is Role.ADMIN or Role(needed) is Role.READER


class UserError(ValueError):
    """A user name that is malformed, already taken, or unknown."""


@dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    role: Role
    created_at: dt.datetime
    disabled_at: dt.datetime | None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


def token_digest(token: str) -> str:
    """The stored form of a token: hex SHA-256.

    A personal token carries 256 random bits, so a fast unsalted digest is the right tool
    (nothing to brute-force, unlike a password, which would need a slow salted KDF); it also
    lets a request find its user by an indexed lookup.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(session: Session, *, name: str, role: Role | str) -> str:
    """Add an enabled user; return their personal API token, which is not stored (show it once).

    Raises
    ------
    UserError
        ``name`` is malformed or already taken.
    ValueError
        ``role`` is not a :class:`Role`.
    """
    role = Role(role)
    if not _NAME.match(name):
        raise UserError("a user name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    if session.scalar(select(UserAccount.id).where(UserAccount.name == name)) is not None:
        raise UserError(f"user {name!r} already exists")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(UserAccount(name=name, role=role.value, token_hash=token_digest(token)))
    session.flush()
    return token


def list_users(session: Session) -> list[UserRow]:
    """Every user, enabled or not, by name."""
    return [_row(account) for account in session.scalars(select(UserAccount).order_by(UserAccount.name))]


def disable_user(session: Session, *, name: str, now: dt.datetime | None = None) -> bool:
    """Disable ``name`` (their token stops working at once); False if they already were.

    Raises
    ------
    UserError
        There is no such user.
    """
    account = session.scalar(select(UserAccount).where(UserAccount.name == name))
    if account is None:
        raise UserError(f"no user {name!r}")
    if account.disabled_at is not None:
        return False
    account.disabled_at = now or utcnow()
    return True


def user_for_token(session: Session, token: str) -> UserRow | None:
    """The enabled user whose personal token this is, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    digest = token_digest(token)
    account = session.scalar(select(UserAccount).where(UserAccount.token_hash == digest))
    # The indexed lookup compares digests, not the secret; the constant-time check keeps the
    # comparison of what was found free of timing differences all the same.
    if account is None or not hmac.compare_digest(account.token_hash, digest) or account.disabled_at is not None:
        return None
    return _row(account)


def any_user(session: Session) -> bool:
    """Whether any user was ever added (a disabled one counts: the API stays closed)."""
    return session.scalar(select(UserAccount.id).limit(1)) is not None


def _row(account: UserAccount) -> UserRow:
    disabled = as_utc(account.disabled_at) if account.disabled_at else None
    return UserRow(account.name, Role(account.role), as_utc(account.created_at), disabled)
