"""Regenerate the Python stubs, typing stubs and descriptor set in clients/python/ from protos/.

Uses grpcio-tools' bundled protoc; `google/api/*.proto` and `google/rpc/*.proto` come from the
installed googleapis-common-protos package, so they are never copied into git.

    python tools/genproto.py           write clients/python/agora/**
    python tools/genproto.py --check   exit 1 if the committed files differ from a fresh generation
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "clients" / "python"
DESCRIPTORS = Path("agora") / "descriptors.binpb"
# What protoc writes; everything else under clients/python/agora (the client, the CLI) is hand-written.
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _googleapis_include() -> str:
    import google.api  # from googleapis-common-protos

    # google/api/annotations.proto sits next to the module; its parent's parent is the include root.
    return str(Path(google.api.__path__[0]).parent.parent)


def _grpc_tools_include() -> str:
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


def _plugin(name: str) -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    found = shutil.which(name, path=f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        sys.exit(f"{name} not found: pip install mypy-protobuf")
    return found


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def generate(out: Path) -> None:
    from grpc_tools import protoc

    files = proto_files()
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{_googleapis_include()}",
        f"-I{_grpc_tools_include()}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out=quiet:{out}",
        f"--mypy_grpc_out=quiet:{out}",
        f"--descriptor_set_out={out / DESCRIPTORS}",
        "--include_imports",
        "--include_source_info",
        *files,
    ]
    (out / DESCRIPTORS).parent.mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    # Every generated folder is a regular package so the distribution's package finder sees it.
    for folder in {(out / f).parent for f in files}:
        while folder != out:
            init = folder / "__init__.py"
            if not init.exists():
                init.write_text("")
            folder = folder.parent


def generated_tree(base: Path) -> set[str]:
    """Files under base/agora that the generator owns: stubs, typing stubs, the descriptor set."""
    owned = {str(DESCRIPTORS.relative_to("agora"))} if (base / DESCRIPTORS).exists() else set()
    for p in (base / "agora").rglob("*_pb2*"):
        if p.name.endswith(GENERATED_SUFFIXES) and "__pycache__" not in p.parts:
            owned.add(str(p.relative_to(base / "agora")))
    return owned


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        (fresh / "agora").mkdir()
        (fresh / "agora" / "__init__.py").write_text("")
        generate(fresh)
        want, have = generated_tree(fresh), generated_tree(OUT)
        drift = sorted(want ^ have)
        drift += sorted(
            f
            for f in want & have
            if not filecmp.cmp(fresh / "agora" / f, OUT / "agora" / f, shallow=False)
        )
    if drift:
        print("generated stubs are out of date; run `make proto` and commit:", *drift, sep="\n  ")
        return 1
    print(f"stubs in sync with {len(proto_files())} proto files")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed stubs drift")
    ns = parser.parse_args()
    if ns.check:
        return check()
    # Remove stale generated files (a deleted proto must not leave its stubs behind).
    for rel in generated_tree(OUT):
        (OUT / "agora" / rel).unlink()
    generate(OUT)
    print(f"generated stubs for {len(proto_files())} proto files into {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
