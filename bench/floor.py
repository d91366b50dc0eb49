"""The decode floor: gunzip and ``orjson.loads`` every log file under a directory, nothing else.

No rule engine can scan a bundle faster than it can read it, so the benchmark reports every
other row as a multiple of this one. Usage: ``python -m bench.floor DIR``.
"""

import sys
import zlib
from pathlib import Path

import orjson


def log_files(root: Path) -> list[Path]:
    """The bundle's CloudTrail files, in a stable order."""
    return sorted(root.rglob("*.json.gz"))


def decode_all(root: Path) -> tuple[int, int, int]:
    """Decode every file; return (files, records, uncompressed bytes)."""
    files = records = raw = 0
    for path in log_files(root):
        # wbits=31: one gzip member, the way CloudTrail writes them; the one-shot call is the
        # fastest zlib path Python has.
        data = zlib.decompress(path.read_bytes(), wbits=31)
        records += len(orjson.loads(data)["Records"])
        files += 1
        raw += len(data)
    return files, records, raw


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.floor DIR", file=sys.stderr)
        return 2
    files, records, raw = decode_all(Path(args[0]))
    print(f"{files} files, {records} records, {raw} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
