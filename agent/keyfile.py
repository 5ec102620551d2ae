"""Secret files in the data directory (store key, replica key): owner-only, published atomically.

Blocking file I/O: call at start-up before the event loop runs, or through asyncio.to_thread.

Exceptions::

    Exception
     └── KeyFileError   the file cannot be opened, is not a regular file, or others may read it
"""

import os
import secrets
import stat
from pathlib import Path


class KeyFileError(Exception):
    """A secret file exists but cannot be used safely."""


def read_key_file(path: Path, what: str) -> bytes:
    """The file's bytes; FileNotFoundError when absent, KeyFileError when unsafe."""
    # Checking the open descriptor, not the path, so the file cannot be swapped in between.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise KeyFileError(f"cannot open {what} {path}: {err}") from err
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{what} {path} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyFileError(
                f"{what} {path} has mode {stat.S_IMODE(info.st_mode):04o}; "
                f"it must not be readable by group or others (chmod 600 {path})"
            )
        return file.read()


def publish_key_file(path: Path, data: bytes) -> bool:
    """Write data to path (mode 0600) atomically and durably; False if path already exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        # link, unlike rename, never replaces a file another process has just published.
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
