"""SHA256SUMS: the checksum file of a model artifact folder (and of a registered version, which is a
copy of one). Its writer, its one parser and its one verifier.

Format (what `sha256sum` writes): one line per file, `<64 lowercase hex>  <name>` (a `*` instead of
the second space, the binary-mode marker, is accepted). Rules the parser enforces:

- the file exists and lists at least one file; no blank or malformed lines;
- names are plain file names inside the folder (letters, digits, `_`, `.`, `-`): no path
  separators, no `.`/`..`, no absolute paths, and not SHA256SUMS itself.
"""

import re
from pathlib import Path

from metasig.errors import InputError
from metasig.io import sha256_file

SUMS = "SHA256SUMS"
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.*)$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ChecksumError(InputError):
    """An artifact file is missing or does not match its recorded sha256, or SHA256SUMS is invalid."""


def format_sums(paths) -> bytes:
    """SHA256SUMS content for these files (sorted by name; names are the files' base names)."""
    return "".join(f"{sha256_file(p)}  {Path(p).name}\n" for p in sorted(paths, key=lambda p: Path(p).name)).encode()


def read_sums(folder) -> dict:
    """Parse `folder`/SHA256SUMS into {name: sha256 hex}. Raises ChecksumError."""
    sums_path = Path(folder) / SUMS
    if not sums_path.is_file():
        raise ChecksumError(sums_path, SUMS, "checksum file is missing; the artifact cannot be verified")
    entries = {}
    for number, line in enumerate(sums_path.read_text().splitlines(), 1):
        match = _LINE.match(line.strip())
        if not match:
            raise ChecksumError(sums_path, f"line {number}", f"not a 'sha256  filename' line: {line!r}")
        digest, name = match.groups()
        if not _NAME.match(name) or name in (".", "..", SUMS):
            raise ChecksumError(sums_path, f"line {number}", f"unsafe or invalid file name {name!r}")
        entries[name] = digest
    if not entries:
        raise ChecksumError(sums_path, SUMS, "checksum file lists no files")
    return entries


def verify(folder, refusing="use it") -> dict:
    """Check every file named in SHA256SUMS; return {name: sha256}. Raises ChecksumError naming the
    first missing or altered file; `refusing` ends the mismatch sentence ("refusing to ...")."""
    folder = Path(folder)
    entries = read_sums(folder)
    for name, digest in entries.items():
        path = folder / name
        if not path.is_file():
            raise ChecksumError(path, name, f"listed in {SUMS} but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise ChecksumError(
                path,
                name,
                f"sha256 mismatch (expected {digest}, found {actual}): checksum mismatch, the artifact was "
                f"altered or corrupted after training; refusing to {refusing}",
            )
    return entries
