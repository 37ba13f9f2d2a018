"""Write files atomically with the permissions `open()` would give them.

`tempfile.mkstemp` creates its file with mode 0600 whatever the umask, so a file written through
it and renamed into place cannot be read by a collaborator or a serving process. Every writer of
jaxseg goes through `atomic_write`: a temporary file next to the target, then `chmod` to
`0o666 & ~umask` (what `open(path, "w")` creates) and `os.replace`, so the target appears
complete or not at all and a failed write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, e.g. `0o022` (read without changing it where Linux allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    with _umask_lock:  # elsewhere the only way to read it is to set it and set it back
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode `open(path, "w")` gives a new file: `0o666 & ~umask`."""
    return 0o666 & ~current_umask()


def default_dir_mode() -> int:
    """The mode `os.mkdir(path)` gives a new folder: `0o777 & ~umask`."""
    return 0o777 & ~current_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """`with atomic_write(path) as f: f.write(...)`: `path` appears complete, or not at all.

    The data go to a hidden temporary file in the same folder (same file system, so the final
    `os.replace` is atomic); on any error, including `KeyboardInterrupt` or a full disk, the
    temporary file is removed and the error re-raised, and an existing `path` is untouched.

    Args:
      path: the file to write.
      mode: "wb" or "w" (text, UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # name the file the caller asked for, not the temporary one
        raise OSError(e.errno, e.strerror, os.fspath(path)) from None
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), default_file_mode())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename in (None, tmp):
            raise OSError(e.errno, e.strerror, os.fspath(path)) from e  # e.g. a full disk
        raise
