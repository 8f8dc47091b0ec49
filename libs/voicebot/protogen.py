"""`make proto`: regenerate `voicebot.events` from `proto/voicebot/v1/*.proto` with grpcio-tools' protoc."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from voicebot.config import REPO_ROOT

PROTO_ROOT = REPO_ROOT / "proto"
EVENTS_DIR = Path(__file__).resolve().parent / "events"


def generate(out_dir: Path) -> list[Path]:
    """Write `<name>_pb2.py` and `.pyi` for every proto file into `out_dir` (flat) and return them."""
    from grpc_tools import protoc

    protos = sorted(PROTO_ROOT.glob("voicebot/v1/*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={tmp}", f"--pyi_out={tmp}"]
        if protoc.main(args + [str(p.relative_to(PROTO_ROOT)) for p in protos]) != 0:
            raise RuntimeError("protoc failed")
        written = []
        for produced in sorted(Path(tmp, "voicebot", "v1").iterdir()):
            target = out_dir / produced.name
            shutil.copyfile(produced, target)
            written.append(target)
    return written


def main() -> None:
    for path in generate(EVENTS_DIR):
        print(f"wrote {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
