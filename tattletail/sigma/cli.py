"""`tattletail sigma convert` and `tattletail sigma check` (wired into tattletail.cli).

Exit codes: 0 every rule converted; 1 some rule is unsupported (named on stderr; every other
rule is still converted and written); 2 a usage error (no such file, pySigma missing).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from tattletail.sigma.convert import Conversion, Converter, keep_additions, render, sigma_files

EXIT_OK, EXIT_UNSUPPORTED = 0, 1


class SigmaUsageError(Exception):
    pass


def convert(paths: Sequence[str], output: str | None, out: TextIO | None = None) -> int:
    """Convert the Sigma rules below `paths`; write them to `output` (a .toml file, or a
    directory for one file per Sigma file), or to `out` (stdout) without one."""
    out = out or sys.stdout
    conversions = _convert(paths)
    converted = [c for c in conversions if c.table is not None]
    if output is None:
        out.write(render([c.table for c in converted if c.table is not None]))
    elif output.endswith(("/", "\\")) or Path(output).is_dir():
        _write_directory(Path(output), converted)
    else:
        target = Path(output)
        try:
            target.write_text(render([c.table for c in converted if c.table]), encoding="utf-8")
        except OSError as exc:
            raise SigmaUsageError(f"cannot write {output}: {exc.strerror}") from None
    for conversion in conversions:
        for line in _problems(conversion):
            print(f"tattletail: sigma: {line}", file=sys.stderr)
    print(_summary(conversions), file=sys.stderr)
    return EXIT_UNSUPPORTED if len(converted) < len(conversions) else EXIT_OK


def check(paths: Sequence[str], out: TextIO | None = None) -> int:
    """Report per rule: converted, warning (what its author probably did not mean) or
    unsupported (which construct), whether it runs natively, and its index gate."""
    out = out or sys.stdout
    conversions = _convert(paths)
    for conversion in conversions:
        where = f"{conversion.path.name}: {conversion.title}"
        if conversion.table is None:
            out.write(f"{where}: unsupported: {conversion.unsupported}\n")
            continue
        native = "native" if conversion.native else "libjq"
        gate = f", index: {', '.join(conversion.gate)}" if conversion.gate else ", no index gate"
        out.write(f"{where}: {conversion.status} ({native}{gate})\n")
        for warning in conversion.warnings:
            out.write(f"    warning: {warning}\n")
    out.write(_summary(conversions) + "\n")
    return EXIT_UNSUPPORTED if any(c.table is None for c in conversions) else EXIT_OK


def _convert(paths: Sequence[str]) -> list[Conversion]:
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise SigmaUsageError(f"no such file or directory: {', '.join(missing)}")
    if not sigma_files(paths):
        raise SigmaUsageError(f"no Sigma rule (.yml, .yaml) in {', '.join(paths)}")
    return Converter().convert_paths(paths)


def _write_directory(directory: Path, conversions: Sequence[Conversion]) -> None:
    by_file: dict[Path, list[Conversion]] = {}
    for conversion in conversions:
        by_file.setdefault(conversion.path, []).append(conversion)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for source, group in by_file.items():
            target = directory / f"{source.stem}.toml"
            tables = [c.table for c in group if c.table is not None]
            if len(tables) == 1 and target.exists():
                tables = [keep_additions(tables[0], target.read_text(encoding="utf-8"))]
            target.write_text(render(tables), encoding="utf-8")
    except OSError as exc:
        raise SigmaUsageError(f"cannot write into {directory}: {exc.strerror}") from None


def _problems(conversion: Conversion) -> list[str]:
    where = f"{conversion.path}: {conversion.title}"
    if conversion.unsupported is not None:
        return [f"{where}: unsupported: {conversion.unsupported}"]
    return [f"{where}: warning: {warning}" for warning in conversion.warnings]


def _summary(conversions: Sequence[Conversion]) -> str:
    converted = sum(1 for c in conversions if c.table is not None)
    warned = sum(1 for c in conversions if c.table is not None and c.warnings)
    native = sum(1 for c in conversions if c.native)
    return (
        f"converted {converted} of {len(conversions)} rules ({warned} with warnings, "
        f"{native} on the native fast path), {len(conversions) - converted} unsupported"
    )
