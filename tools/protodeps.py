"""Fill .build/protodeps with the google/* .proto files shipped by googleapis-common-protos, for buf."""

from __future__ import annotations

import shutil
from pathlib import Path

import google.api

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / ".build" / "protodeps"


def main() -> None:
    source = Path(google.api.__path__[0]).parent.parent  # site-packages
    if DEST.exists():
        shutil.rmtree(DEST)
    for proto in (source / "google").rglob("*.proto"):
        if proto.parts[-3:-1] == ("google", "protobuf") or "protobuf" in proto.relative_to(source).parts[:2]:
            continue  # buf ships the well-known types itself
        target = DEST / proto.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(proto, target)


if __name__ == "__main__":
    main()
