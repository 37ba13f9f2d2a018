"""Short failure messages for people, full tracebacks for developers (`JAXSEG_DEBUG=1`).

A problem the user can cause or meet (a full disk, a file without permission, a corrupt
checkpoint) ends with a few lines: what happened, which path, what to do. Set the environment
variable `JAXSEG_DEBUG=1` to get the full Python traceback (and the log records of orbax's
background threads) as well.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback

DEBUG_ENV = "JAXSEG_DEBUG"

# errno values a user meets on a healthy machine, with what to do about them.
_ADVICE = {
    errno.ENOSPC: "the disk is full: free space, or choose a folder on another disk",
    errno.EDQUOT: "the disk quota is exceeded: free space, or choose a folder on another disk",
    errno.EACCES: "permission denied: choose a folder you can write to, or fix its permissions",
    errno.EPERM: "operation not permitted: choose a folder you can write to",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EIO: "an input/output error (failing disk or network file system)",
}
# Errors from C++ (tensorstore in orbax) carry the errno only in their text.
_TEXT_ERRNO = (
    (re.compile(r"No space left on device|os_error_code='28'"), errno.ENOSPC),
    (re.compile(r"Disk quota exceeded"), errno.EDQUOT),
    (re.compile(r"Permission denied"), errno.EACCES),
    (re.compile(r"Read-only file system"), errno.EROFS),
)


def debug_enabled() -> bool:
    """True when `JAXSEG_DEBUG` is set to anything but "", "0", "false" or "no"."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and all(error is not e for e in seen):
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def system_errno(error: BaseException) -> int | None:
    """The errno of a user-facing system problem in `error` or its causes, else None."""
    for link in _chain(error):
        if isinstance(link, OSError) and link.errno in _ADVICE:
            return link.errno
        for pattern, number in _TEXT_ERRNO:
            if pattern.search(str(link)):
                return number
    return None


def system_problem(error: BaseException, what: str) -> str | None:
    """One line: "<what>: <advice> (<path>)" if `error` is a disk/permission problem, else None.

    Args:
      error: the exception (its causes are searched too).
      what: what was being done, e.g. "writing checkpoint 200 to runs/x/checkpoints".
    """
    number = system_errno(error)
    if number is None:
        return None
    paths = [link.filename for link in _chain(error) if getattr(link, "filename", None)]
    where = f" ({paths[0]})" if paths else ""
    return f"{what}: {_ADVICE[number]}{where}"


def print_failure(message: str, error: BaseException | None = None, *, file=None) -> None:
    """Prints `message` (a few lines) to stderr; with `JAXSEG_DEBUG` set, the traceback first."""
    stream = file or sys.stderr
    if error is not None and debug_enabled():
        traceback.print_exception(error, file=stream)
    print(message, file=stream, flush=True)
    if error is not None and not debug_enabled():
        print(f"(set {DEBUG_ENV}=1 for the full traceback)", file=stream, flush=True)
