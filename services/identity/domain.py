"""Identity's rules: what a valid account is, password hashing, session tokens, login throttling. No I/O."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2

from services.kit.errors import AlreadyExists, InvalidArgument, ResourceExhausted

USER_NAME = re.compile(r"^[A-Za-z0-9_.\-]{3,32}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_EMAIL = 254
MAX_BIO = 255
MIN_PASSWORD, MAX_PASSWORD = 8, 128


@dataclass(frozen=True)
class User:
    id: str
    user_name: str
    email: str
    bio: str
    created_at: datetime


@dataclass(frozen=True)
class NewUser:
    """A validated sign-up: names as typed, plus the lower-case keys uniqueness is checked on."""

    user_name: str
    email: str
    bio: str

    @property
    def user_name_key(self) -> str:
        return self.user_name.lower()

    @property
    def email_key(self) -> str:
        return self.email.lower()


@dataclass(frozen=True)
class Session:
    user: User
    expires_at: datetime


@dataclass(frozen=True)
class IdentityRules:
    """Tunables with production defaults; tests and the bench shorten them."""

    session_ttl: timedelta = timedelta(hours=24)
    csrf_ttl: timedelta = timedelta(hours=24)
    cache_ttl: timedelta = timedelta(seconds=2)  # how long other services may cache a CheckSession answer
    user_failures: int = 5  # failed logins per account ...
    user_window: float = 300.0  # ... within this many seconds, then that account is throttled
    address_attempts: int = 30  # login attempts per client address ...
    address_window: float = 60.0  # ... within this many seconds
    signups_per_address: int = 20
    signup_window: float = 3600.0
    # argon2id cost: OWASP's minimum recommendation (19 MiB, 2 passes, 1 lane).
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    argon2_parallelism: int = 1


def validate_sign_up(user_name: str, email: str, password: str, bio: str) -> NewUser:
    problems: dict[str, str] = {}
    if not USER_NAME.match(user_name):
        problems["user_name"] = "must be 3 to 32 characters from letters, digits, '_', '.' and '-'"
    if len(email) > MAX_EMAIL or not EMAIL.match(email):
        problems["email"] = f"must be an email address (name@domain), at most {MAX_EMAIL} characters"
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        problems["password"] = f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long"
    elif password.lower() in (user_name.lower(), email.lower()):
        problems["password"] = "must not be the user name or the email address"
    if len(bio) > MAX_BIO:
        problems["bio"] = f"must be at most {MAX_BIO} characters"
    if problems:
        raise InvalidArgument.fields(problems)
    return NewUser(user_name=user_name, email=email, bio=bio)


# GoBid's own validation (internal/usecase/user), messages as the seed words them: its clients show
# them. A seed sign-up must also pass Agora's rules (the same account logs in on /v1).
SEED_BIO_MIN, SEED_BIO_MAX, SEED_PASSWORD_MIN = 10, 255, 8
SEED_EMPTY = "this field cannot be empty"


def validate_seed_sign_up(user_name: str, email: str, password: str, bio: str) -> NewUser:
    """GoBid's sign-up rules first (one message per field, the seed's words), then Agora's."""
    problems: dict[str, str] = {}
    if not user_name.strip():
        problems["user_name"] = SEED_EMPTY
    if not email.strip():
        problems["email"] = SEED_EMPTY
    elif not EMAIL.match(email):
        problems["email"] = "must be a valid email"
    if not bio.strip():
        problems["bio"] = SEED_EMPTY
    elif not SEED_BIO_MIN <= len(bio) <= SEED_BIO_MAX:
        problems["bio"] = "this field must have a length between 10 and 255"
    if len(password) < SEED_PASSWORD_MIN:
        problems["password"] = "password must be bigger than 8 chars"
    try:
        new = validate_sign_up(user_name, email, password, bio)
    except InvalidArgument as exc:
        for name, problem in exc.violations.items():
            problems.setdefault(name, problem)
        raise InvalidArgument.fields(problems) from None
    if problems:
        raise InvalidArgument.fields(problems)
    return new


def validate_seed_login(email: str, password: str) -> None:
    """GoBid's login rules. The seed names the password's problem "passowrd": its clients read that key."""
    problems: dict[str, str] = {}
    if not EMAIL.match(email):
        problems["email"] = "must be a valid email"
    if not password.strip():
        problems["passowrd"] = "this field cannot be blank"
    if problems:
        raise InvalidArgument.fields(problems)


def validate_login(email: str, user_name: str, password: str) -> tuple[str, str]:
    """('email' | 'user_name', lower-case key) naming the account to check."""
    if bool(email) == bool(user_name):
        raise InvalidArgument.fields({"email": "give exactly one of email and user_name",
                                      "user_name": "give exactly one of email and user_name"})
    if not password:
        raise InvalidArgument.field("password", "must not be empty")
    if len(password) > MAX_PASSWORD:
        # Longer than any password we accept: cannot match, and hashing it would only cost CPU.
        raise InvalidArgument.field("password", f"must be at most {MAX_PASSWORD} characters long")
    return ("email", email.lower()) if email else ("user_name", user_name.lower())


class Passwords:
    """argon2id hashes. `verify_nobody` spends the same work as a real check, so an unknown user
    answers in the same time as a wrong password."""

    def __init__(self, rules: IdentityRules) -> None:
        self._hasher = PasswordHasher(
            time_cost=rules.argon2_time_cost, memory_cost=rules.argon2_memory_kib,
            parallelism=rules.argon2_parallelism,
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_nobody(self, password: str) -> bool:
        self.verify(self._dummy, password)
        return False


def new_token() -> str:
    """An opaque, unguessable token (256 bits), for sessions and CSRF."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What is stored instead of a session token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class LoginThrottled(ResourceExhausted):
    """Too many attempts; carries RetryInfo so clients know when to try again."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def details(self) -> list[any_pb2.Any]:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(timedelta(seconds=max(1, round(self.retry_after))))
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        return [packed]


class NameTaken(AlreadyExists):
    """user_name or email already in use; ErrorInfo metadata `field` says which."""

    def __init__(self, field_name: str) -> None:
        super().__init__(f"{field_name} is already taken")
        self.field_name = field_name

    def details(self) -> list[any_pb2.Any]:
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.ErrorInfo(reason="ALREADY_TAKEN", domain="identity.agora",
                                                metadata={"field": self.field_name}))
        return [packed]


@dataclass
class _Window:
    limit: int
    seconds: float
    hits: dict[str, deque] = field(default_factory=dict)

    def retry_after(self, key: str, now: float) -> float:
        """0 when `key` may try now, else seconds until its oldest hit leaves the window."""
        hits = self.hits.get(key)
        if not hits:
            return 0.0
        while hits and hits[0] <= now - self.seconds:
            hits.popleft()
        if not hits:
            del self.hits[key]
            return 0.0
        return hits[0] + self.seconds - now if len(hits) >= self.limit else 0.0

    def hit(self, key: str, now: float) -> None:
        if len(self.hits) > 100_000:  # bound memory: drop keys whose window has passed
            self.hits = {k: d for k, d in self.hits.items() if d and d[-1] > now - self.seconds}
        self.hits.setdefault(key, deque(maxlen=self.limit)).append(now)


class LoginThrottle:
    """Sliding windows: failed logins per account, all attempts per client address, sign-ups per address."""

    def __init__(self, rules: IdentityRules, clock=time.monotonic) -> None:
        self._clock = clock
        self._user = _Window(rules.user_failures, rules.user_window)
        self._address = _Window(rules.address_attempts, rules.address_window)
        self._signup = _Window(rules.signups_per_address, rules.signup_window)

    def check_login(self, account_key: str, address: str) -> None:
        now = self._clock()
        wait = self._address.retry_after(address, now)
        if wait:
            raise LoginThrottled("too many login attempts from this address; retry later", wait)
        self._address.hit(address, now)
        wait = self._user.retry_after(account_key, now)
        if wait:
            raise LoginThrottled("too many failed logins for this account; retry later", wait)

    def failed(self, account_key: str) -> None:
        self._user.hit(account_key, self._clock())

    def check_sign_up(self, address: str) -> None:
        now = self._clock()
        wait = self._signup.retry_after(address, now)
        if wait:
            raise LoginThrottled("too many sign-ups from this address; retry later", wait)
        self._signup.hit(address, now)
