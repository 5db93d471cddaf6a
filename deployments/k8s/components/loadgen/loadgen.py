"""Agora's load generator: virtual users drive the bridge's REST API the way the seed clients do.

Each user loops: create a poll, vote on it a few times, read it back, check /health. Standard
library only, so it runs in the Agora image unchanged. Every REPORT_SECONDS it prints one JSON
line: requests per second, status-code counts and latency percentiles per route.

Env: BRIDGE_URL (http://gateway), USERS (10), THINK_SECONDS (0.2), REPORT_SECONDS (10),
DURATION_SECONDS (0 = run until stopped).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict

BRIDGE = os.environ.get("BRIDGE_URL", "http://gateway").rstrip("/")
USERS = int(os.environ.get("USERS", "10"))
THINK = float(os.environ.get("THINK_SECONDS", "0.2"))
REPORT = float(os.environ.get("REPORT_SECONDS", "10"))
DURATION = float(os.environ.get("DURATION_SECONDS", "0"))

stop = threading.Event()
lock = threading.Lock()
codes: Counter[str] = Counter()
latencies: dict[str, list[float]] = defaultdict(list)


def call(route: str, method: str, path: str, body: dict | None = None) -> dict | None:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        BRIDGE + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    status, payload = "error", None
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = str(resp.status), resp.read()
            payload = json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        status = str(e.code)
    except (OSError, ValueError):
        status = "error"
    with lock:
        codes[f"{route} {status}"] += 1
        latencies[route].append(time.perf_counter() - started)
    return payload if isinstance(payload, dict) else None


def user() -> None:
    while not stop.is_set():
        poll = call(
            "create poll", "POST", "/poll", {"question": "Best pizza?", "options": ["margherita", "funghi"]}
        )
        poll_id = poll and (poll.get("id") or (poll.get("poll") or {}).get("id"))
        if poll_id:
            for _ in range(5):
                call("vote", "POST", f"/vote/{poll_id}/{random.randint(0, 1)}")
            call("read poll", "GET", f"/poll/{poll_id}")
        call("health", "GET", "/health")
        stop.wait(THINK)


def report(window: float) -> None:
    with lock:
        snapshot, lat = dict(codes), {k: sorted(v) for k, v in latencies.items()}
        codes.clear()
        latencies.clear()
    per_route = {
        route: {
            "rps": round(len(v) / window, 1),
            "p50_ms": round(v[len(v) // 2] * 1000, 1),
            "p99_ms": round(v[min(len(v) - 1, int(len(v) * 0.99))] * 1000, 1),
        }
        for route, v in lat.items()
        if v
    }
    print(json.dumps({"bridge": BRIDGE, "users": USERS, "routes": per_route, "status": snapshot}), flush=True)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=user, daemon=True) for _ in range(USERS)]
    for t in threads:
        t.start()
    started = last = time.monotonic()
    try:
        while not stop.wait(REPORT):
            now = time.monotonic()
            report(now - last)
            last = now
            if DURATION and now - started >= DURATION:
                stop.set()
    except KeyboardInterrupt:
        stop.set()
    report(max(time.monotonic() - last, 1e-3))


if __name__ == "__main__":
    main()
