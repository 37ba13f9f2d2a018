"""Where builders find their archives, and preparing with downloads switched off.

`manual_dir_of(dl_manager)` and `fetch_or_explain(...)` are the find-in-manual_dir-or-download
steps every jaxseg builder (VOC, CamVid, ADE20K) takes, with one wording for what is missing.

The VOC and CamVid builders download their archives when `manual_dir` lacks them, which is
right for `tfds.load` on a machine meant to fetch data, and wrong when a person pointed
`manual_dir` at a folder (with a typo, or half extracted) and did not ask for a download.
`prepare(builder, manual_dir=..., download=False)` runs the builder under `no_downloads()`:
it then stops with the list of what is missing and where to get it, and whatever the failed
attempt created under the builder's data folder is removed again (only paths that did not
exist before; nothing of the user's is touched).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jaxseg.data.errors import DatasetNotFoundError

_DOWNLOADS_ALLOWED = contextvars.ContextVar("jaxseg_downloads_allowed", default=True)


def downloads_allowed() -> bool:
    """False inside `no_downloads()`: builders must not fetch anything then."""
    return _DOWNLOADS_ALLOWED.get()


@contextlib.contextmanager
def no_downloads() -> Iterator[None]:
    """Within this block jaxseg's builders raise `DatasetNotFoundError` instead of downloading."""
    token = _DOWNLOADS_ALLOWED.set(False)
    try:
        yield
    finally:
        _DOWNLOADS_ALLOWED.reset(token)


def manual_dir_of(dl_manager: Any) -> Path | None:
    """The builder's `manual_dir`, or None where TFDS has none (missing or empty folder)."""
    try:
        return Path(os.fspath(dl_manager.manual_dir))
    except AssertionError:  # TFDS asserts on a missing or empty manual_dir
        return None


def fetch_or_explain(
    dl_manager: Any,
    url: str,
    *,
    what: str,
    manual: Path | None,
    missing: str,
    instructions: str,
) -> Path:
    """`url` downloaded and extracted, when `manual` lacked `what` and downloads are allowed.

    Args:
      dl_manager: the TFDS download manager.
      url: the official archive.
      what: the data, as the messages name it ("CamVid folder").
      manual: the manual directory searched (None: none given).
      missing: lines ("  - ...") saying what the manual directory lacks.
      instructions: the builder's how-to, appended to errors.

    Raises:
      DatasetNotFoundError: downloads are off (nothing was fetched), or the download failed;
        the message names the manual directory, what is missing and where to get it.
    """
    if not downloads_allowed():
        where = f"manual_dir {manual}" if manual else "the manual directory (none given)"
        raise DatasetNotFoundError(
            f"{what} not found in {where}, and downloads are off (nothing was downloaded). "
            f"Missing:\n{missing}\nGet it from {url}.\n\n{instructions}"
        )
    try:
        return Path(os.fspath(dl_manager.download_and_extract(url)))
    except Exception as err:  # no network, DNS, HTTP error, checksum: all end the same way
        where = f"manual_dir {manual} has no {what}" if manual else "no manual_dir given"
        raise DatasetNotFoundError(
            f"{what} not found: {where}, and downloading {url} failed "
            f"({type(err).__name__}: {err}).\n\n{instructions}"
        ) from err


class OneLinePreparation:
    """Mix into a TFDS builder: one line when preparation starts, instead of TFDS's
    "Downloading and preparing dataset Unknown size ...", its progress bars with temporary
    paths and "... Subsequent calls will reuse this data." (misleading for a local build)."""

    def download_and_prepare(self, *args: Any, **kwargs: Any) -> Any:
        from tensorflow_datasets.core.utils import tqdm_utils

        was_on = tqdm_utils._active  # TFDS has a setter but no getter
        tqdm_utils.display_progress_bar(False)
        try:
            return super().download_and_prepare(*args, **kwargs)
        finally:
            tqdm_utils.display_progress_bar(was_on)

    def _log_download_bytes(self) -> None:
        config = f"/{self.builder_config.name}" if self.builder_config else ""
        print(f"Preparing {self.name}{config} in {self.data_dir} (once).", file=sys.stderr)

    def _log_download_done(self) -> None:
        pass


def _tree(root: Path) -> set[Path]:
    if not root.exists():
        return set()
    return {root, *root.rglob("*")}


def _remove_new(root: Path, before: set[Path]) -> None:
    """Deletes the paths under `root` that were not in `before` (outermost first)."""
    for path in sorted(_tree(root) - before, key=lambda p: len(p.parts)):
        if not path.exists() and not path.is_symlink():
            continue  # inside a folder removed a moment ago
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def prepare(builder: Any, *, manual_dir: str | os.PathLike | None, download: bool) -> None:
    """`builder.download_and_prepare` from `manual_dir`, downloading only if `download`.

    On failure everything the attempt created in `<data_dir>/<name>/` and `<data_dir>/downloads/`
    (and `data_dir` itself, if it was created and is empty) is removed, and the error re-raised.
    """
    import tensorflow_datasets as tfds

    kwargs = {}
    if manual_dir:
        kwargs["download_config"] = tfds.download.DownloadConfig(
            manual_dir=os.path.expanduser(os.fspath(manual_dir))
        )
    data_root = Path(os.fspath(builder.data_dir_root))
    existed = data_root.exists()
    # Only this builder's folder and the download cache: another dataset may be in the middle
    # of being prepared in the same data folder.
    roots = [data_root / builder.name, data_root / "downloads"]
    before = [_tree(root) for root in roots]
    guard = contextlib.nullcontext() if download else no_downloads()
    try:
        with guard:
            builder.download_and_prepare(**kwargs)
    except BaseException:
        for root, old in zip(roots, before, strict=True):
            _remove_new(root, old)
        if not existed:
            with contextlib.suppress(OSError):
                data_root.rmdir()  # only if empty
        raise
