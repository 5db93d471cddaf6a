"""The saved session: a small TOML file (mode 0600) holding the session token and defaults.

Where: $AGORA_CONFIG, else $XDG_CONFIG_HOME/agora/config.toml, else ~/.config/agora/config.toml.
Keys: token, user_name, user_id, target, expires_at (all strings).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def config_path(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("AGORA_CONFIG"):
        return Path(os.environ["AGORA_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "agora" / "config.toml"


def load(path: Path) -> dict[str, str]:
    """The file's string keys ({} when it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        import tomllib
    except ImportError:  # Python 3.10: the flat `key = "string"` lines this module writes
        return _parse_flat(text)
    return {k: v for k, v in tomllib.loads(text).items() if isinstance(v, str)}


def save(path: Path, values: dict[str, str]) -> None:
    """Write atomically with mode 0600 (the token is a secret); the directory gets 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = ["# agora CLI session (written by `agora login`; keep it private)"]
    # A JSON string is a valid TOML basic string for the text we store.
    lines += [f"{key} = {json.dumps(value)}" for key, value in sorted(values.items()) if value]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, ("\n".join(lines) + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _parse_flat(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            try:
                parsed = json.loads(value.strip())
            except ValueError:
                continue
            if isinstance(parsed, str):
                out[key.strip()] = parsed
    return out
