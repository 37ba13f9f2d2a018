"""Outputs that appear together and complete, or not at all.

An export writes a model (a file, or a SavedModel folder) and its JSON. Both are written to
hidden temporary names beside their targets (same file system), with the permissions `open()`
and `mkdir()` would give them, and renamed into place only once everything is written and
checked; on any error the temporary files, and folders this export created, are removed and
whatever was at the targets before is untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from jaxseg import files
from jaxseg.export.errors import ExportError


def nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_target(path: Path, *, folder: bool, overwrite: bool, option: str = "--output") -> None:
    """Raises `ExportError` unless `path` can be written: absent (or replaceable with
    `overwrite`), of the right kind (file or folder), in a folder that exists or can be made."""
    if os.path.lexists(path):
        if path.is_dir() != folder:
            want = "a folder (a SavedModel)" if folder else "a file"
            have = "folder" if path.is_dir() else "file"
            raise ExportError(f"{option} {path} is a {have}, but this format writes {want}")
        if not overwrite:
            raise ExportError(
                f"{option} {path} already exists; nothing was written. Choose another "
                "--output, or pass --overwrite to replace it."
            )
    existing = nearest_existing(path.parent)
    if not existing.is_dir():
        raise ExportError(f"cannot create {option} {path}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExportError(
            f"cannot write {option} {path}: permission denied in {existing}. Choose a folder "
            "you can write to."
        )


class Staging:
    """Temporary files and folders beside their targets, renamed into place by `commit`.

    with Staging() as stage:
        tmp = stage.file(target)          # write into tmp
        stage.commit()                    # all targets appear; else all removed
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []  # (temporary, target)
        self._made: list[Path] = []  # folders this export created (removed on failure)

    def _parent(self, target: Path) -> Path:
        parent = target.parent
        missing = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            folder.mkdir()
            self._made.append(folder)
        return target.parent

    def file(self, target: Path) -> Path:
        """An empty temporary file that `commit` renames to `target`."""
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=self._parent(target)
        )
        os.close(fd)
        tmp = Path(name)
        tmp.chmod(files.default_file_mode())  # mkstemp makes it 0600 whatever the umask
        self._pending.append((tmp, target))
        return tmp

    def folder(self, target: Path) -> Path:
        """An empty temporary folder that `commit` renames to `target`."""
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=self._parent(target)))
        tmp.chmod(files.default_dir_mode())
        self._pending.append((tmp, target))
        return tmp

    def commit(self) -> None:
        """Renames every temporary into place (an existing folder target is replaced whole)."""
        for tmp, target in self._pending:
            if target.is_dir() and not target.is_symlink():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
                os.replace(target, old / target.name)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        self._pending.clear()
        self._made.clear()

    def discard(self) -> None:
        """Removes the temporaries and the folders made for them."""
        for tmp, _ in self._pending:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._pending.clear()
        self._made.clear()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()
