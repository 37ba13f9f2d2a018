"""Downloading released models into a local cache, once.

- The cache is `$JAXSEG_CACHE`, else `~/.cache/jaxseg`.
- A download is written to `<name>.part` and renamed into place only when complete and of the
  right size, so the cache never holds a partial file under the final name. An interrupted
  transfer resumes from the `.part` file with an HTTP `Range` request (a server that ignores
  it sends the whole file again, which is detected by its status code).
- The size is checked against the entry's known size (when given) and the server's
  `Content-Length`; a mismatch deletes the partial file and raises.
- Archives (`.tar.gz`) are extracted once into a folder of the cache, again renamed into place
  when complete; members with absolute paths or `..` are refused.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from jaxseg.files import default_dir_mode

CHUNK = 1 << 20


def cache_dir() -> Path:
    """The cache root: `$JAXSEG_CACHE` or `~/.cache/jaxseg` (created on first use)."""
    root = Path(os.environ.get("JAXSEG_CACHE") or Path.home() / ".cache" / "jaxseg").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _progress(total: int | None, initial: int, name: str):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        file=sys.stderr,
        disable=None,  # off when stderr is not a terminal
    )


class _Interrupted(Exception):
    """The connection ended before the announced number of bytes arrived."""


def _transfer(url: str, part: Path, expected_size: int | None, timeout: float) -> None:
    """One request: appends to `part` (resuming with Range) until the server's end."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "jaxseg"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # our partial file is not a prefix of theirs
            part.unlink()
            raise _Interrupted("the server refused to resume; starting again") from None
        raise
    with response:
        length = response.headers.get("Content-Length")
        if response.status == 206:
            start = response.headers.get("Content-Range", "").split(" ")[-1].split("-")[0]
            if start != str(offset):
                raise OSError(f"{url}: resumed at byte {start!r}, asked for {offset}")
            mode = "ab"
        else:  # 200: the whole file (the server ignored Range)
            offset, mode = 0, "wb"
        total = offset + int(length) if length is not None else None
        if expected_size is not None and total is not None and total != expected_size:
            part.unlink(missing_ok=True)
            raise ValueError(
                f"{url}: the server offers {total} bytes, the zoo expects {expected_size}; "
                "refusing the file (a changed or wrong download address?)"
            )
        received = offset
        with open(part, mode) as out, _progress(total, offset, part.name[:-5]) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as error:  # IncompleteRead, reset
                    raise _Interrupted(str(error)) from None
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if total is not None and received < total:
            raise _Interrupted(f"got {received} of {total} bytes")


def download(
    urls: str | Sequence[str],
    dest: str | Path,
    expected_size: int | None = None,
    attempts: int = 3,
    timeout: float = 60.0,
) -> Path:
    """Downloads the first reachable of `urls` to `dest`, unless `dest` already exists.

    Args:
      urls: one address or alternatives tried in order.
      dest: final path; the transfer goes to `dest + ".part"` and is renamed when complete.
      expected_size: bytes the file must have (checked before and after the transfer).
      attempts: transfers per address; each one resumes where the previous stopped.
      timeout: seconds without data before a transfer counts as interrupted.

    Returns:
      `dest`.

    Raises:
      ValueError: the size is wrong (the partial file is deleted).
      OSError: no address delivered the file; the `.part` file is kept for the next call.
    """
    dest = Path(dest)
    if dest.exists():
        if expected_size is not None and dest.stat().st_size != expected_size:
            raise ValueError(
                f"{dest} has {dest.stat().st_size} bytes, expected {expected_size}: delete it "
                "and download again"
            )
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors = []
    for url in [urls] if isinstance(urls, str) else list(urls):
        for _ in range(attempts):
            try:
                _transfer(url, part, expected_size, timeout)
            except _Interrupted as error:
                errors.append(f"{url}: interrupted ({error})")
                continue
            except (urllib.error.URLError, OSError) as error:
                errors.append(f"{url}: {error}")
                break
            size = part.stat().st_size
            if expected_size is not None and size != expected_size:
                part.unlink()
                raise ValueError(
                    f"{url}: downloaded {size} bytes, expected {expected_size}; the partial "
                    "file was deleted"
                )
            os.replace(part, dest)
            return dest
    kept = f"; {part} is kept and the next call resumes it" if part.exists() else ""
    raise OSError(f"could not download {dest.name}:\n  " + "\n  ".join(errors) + kept)


def _fingerprint(path: Path) -> str:
    """Changes when the file at `path` is replaced (absolute path, size, modification time)."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def extract_once(archive: str | Path) -> Path:
    """Extracts a `.tar.gz` into `<cache>/extracted/<name>-<fingerprint>/` once; returns it.

    Raises:
      ValueError naming the archive when it is not a readable tar.gz or holds unsafe paths.
    """
    archive = Path(archive)
    stem = archive.name.removesuffix(".gz").removesuffix(".tar").removesuffix(".tgz")
    target = cache_dir() / "extracted" / f"{stem}-{_fingerprint(archive)}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=target.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    parts = Path(member.name).parts
                    if member.name.startswith("/") or ".." in parts:
                        raise ValueError(f"{archive}: unsafe member path {member.name!r}")
                    if not (member.isfile() or member.isdir()):
                        raise ValueError(f"{archive}: unsupported member {member.name!r}")
                if hasattr(tarfile, "data_filter"):  # Python >= 3.12: no links, no devices
                    tar.extractall(staging, members=members, filter="data")
                else:
                    tar.extractall(staging, members=members)
        except (tarfile.TarError, EOFError, OSError) as error:
            raise ValueError(
                f"{archive}: not a readable .tar.gz archive ({error}); delete it and download "
                "it again"
            ) from None
        os.chmod(staging, default_dir_mode())  # mkdtemp makes it 0700 whatever the umask
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
