"""Abuse limits at the bridge: token buckets per client address (login, writes), per WebSocket (frames),
and the security headers every response carries.

A bucket holds `burst` tokens and refills `rate` per second; a request takes one or gets 429 with
Retry-After saying when the next token arrives. Buckets live in a bounded LRU, so a flood of
distinct addresses costs memory only up to `max_clients`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from google.rpc import code_pb2

from gateway.errors import BridgeError

# The credential-guessing surface: every way in with a password, or to mint accounts.
LOGIN_METHODS = frozenset({"agora.identity.v1.IdentityService.Login",
                           "agora.identity.v1.IdentityService.SignUp"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass(frozen=True)
class Rate:
    """`rate` tokens per second, at most `burst` saved up; rate <= 0 means unlimited."""

    rate: float
    burst: float

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0


class TokenBuckets:
    """One bucket per key, least recently used forgotten first beyond `max_keys`."""

    def __init__(self, rate: Rate, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0.0 when `key` may go now (a token is spent), else the seconds until it may."""
        if self.rate.unlimited:
            return 0.0
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.rate.burst, now))
        tokens = min(self.rate.burst, tokens + (now - at) * self.rate.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True)
class ClientLimits:
    """Per client address: `login` for LOGIN_METHODS, `writes` for every other non-GET call."""

    login: Rate = Rate(rate=10 / 60, burst=10)  # ten tries, then one every six seconds
    writes: Rate = Rate(rate=50, burst=200)
    max_clients: int = 100_000


class RateLimiter:
    def __init__(self, limits: ClientLimits, clock: Callable[[], float] = time.monotonic):
        self.login = TokenBuckets(limits.login, max_keys=limits.max_clients, clock=clock)
        self.writes = TokenBuckets(limits.writes, max_keys=limits.max_clients, clock=clock)

    def check(self, http_method: str, rpc_full_name: str, client: str) -> None:
        """Raise 429 (RESOURCE_EXHAUSTED, Retry-After) when `client` is over its budget for this call."""
        if rpc_full_name in LOGIN_METHODS:
            wait, what = self.login.take(client), "login attempts"
        elif http_method not in SAFE_METHODS:
            wait, what = self.writes.take(client), "writes"
        else:
            return
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise BridgeError(
                code_pb2.RESOURCE_EXHAUSTED,
                f"too many {what} from this address; retry in {seconds} s",
                http=429,
                headers={"retry-after": str(seconds)},
            )


@dataclass(frozen=True)
class FrameLimits:
    """Per WebSocket connection: frame size and a frame-rate bucket."""

    max_frame_bytes: int = 1 << 20
    frames: Rate = Rate(rate=100, burst=200)


class FrameBudget:
    """One connection's frame budget; `admit` returns a close (code, reason) or None."""

    # RFC 6455: 1009 message too big, 1008 policy violation.
    TOO_BIG = 1009
    POLICY = 1008

    def __init__(self, limits: FrameLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.bucket = TokenBuckets(limits.frames, max_keys=1, clock=clock)

    def admit(self, size: int) -> tuple[int, str] | None:
        if size > self.limits.max_frame_bytes:
            return self.TOO_BIG, f"frame of {size} bytes exceeds {self.limits.max_frame_bytes}"
        if self.bucket.take("") > 0:
            return self.POLICY, f"more than {self.limits.frames.rate:g} frames/s"
        return None


class SecurityHeadersMiddleware:
    """nosniff, no framing, no referrer leaks on every HTTP response; HSTS only when served over TLS."""

    BASE = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", b"frame-ancestors 'none'"),
        (b"referrer-policy", b"no-referrer"),
    )
    HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [*self.BASE, self.HSTS] if scope.get("scheme") == "https" else list(self.BASE)
        names = {k for k, _ in extra}

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in (message.get("headers") or []) if k.lower() not in names]
                message["headers"] = [*headers, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
