"""`agora up` as a child process on free ports with its own data dir: what the security and fuzz tests attack.

The whole mesh (ten services and the bridge) in one process, embedded backends, its output captured
to a file so a test can grep what it logged. Ports: a random offset, checked free before use.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.kit.registry import DOMAINS
from tests.ports import free_mesh_ports

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "svc-key-7f3a9c"  # the prod-like service API key the mesh is started with


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0



class Mesh:
    def __init__(self, workdir: Path, **env: str) -> None:
        self.offset, self.http_port = free_mesh_ports()
        self.workdir = workdir
        self.log_path = workdir / "up.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
        self.env.update({"AGORA_PORT_OFFSET": str(self.offset), "AGORA_HTTP_PORT": str(self.http_port),
                         "AGORA_BACKENDS": "embedded", "AGORA_LOG_FORMAT": "json", "AGORA_LOGIN_RATE": "0",
                         "AGORA_WRITE_RATE": "0", "AGORA_SERVICE_API_KEY": API_KEY,
                         "AGORA_METRICS_PORT": "-1"})
        self.env.update(env)
        self.scheme = "https" if self.env.get("AGORA_TLS_CERT") else "http"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    def target(self, domain: str) -> str:
        return f"127.0.0.1:{DOMAINS[domain].port + self.offset}"

    def start(self, timeout: float = 90) -> Mesh:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "agora.cli", "up", "--data-dir",
                                      str(self.workdir / "data")],
                                     cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while b"ready; Ctrl-C" not in self.log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"agora up did not start:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        return rss_kb(self.proc.pid)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop_clean(self) -> None:
        """Stop it, then fail if it ever logged an ERROR (its shutdown included) or did not exit 0
        on SIGTERM: a fixture's teardown calls this after the module's tests."""
        from tests.logcheck import error_lines

        was_running = self.alive()
        self.stop()
        bad = error_lines(self.log_text())
        assert not bad, "the mesh logged ERROR lines:\n" + "\n".join(line[:400] for line in bad[:20])
        if was_running:
            assert self.proc is not None and self.proc.returncode == 0, (
                f"agora up exited {self.proc.returncode if self.proc else None} on "
                f"SIGTERM:\n{self.log_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
