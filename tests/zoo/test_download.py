"""Downloads into the zoo cache, against a local HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from jaxseg.zoo import download as dl

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


class Server:
    """Serves PAYLOAD at /model.tar.gz with Range support; can cut the first transfers short."""

    def __init__(self):
        self.interrupt = 0  # transfers still to cut after half the bytes
        self.honour_range = True
        self.requests: list[str | None] = []  # the Range header of each request
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != "/model.tar.gz":
                    self.send_error(404)
                    return
                wanted = self.headers.get("Range")
                server.requests.append(wanted)
                start = 0
                if wanted and server.honour_range:
                    start = int(wanted.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header(
                        "Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"
                    )
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.interrupt:
                    server.interrupt -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/model.tar.gz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_download_writes_the_file_once(server, tmp_path):
    dest = tmp_path / "d" / "model.tar.gz"
    assert dl.download(server.url, dest, len(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("model.tar.gz.part").exists()
    dl.download(server.url, dest, len(PAYLOAD))
    assert len(server.requests) == 1  # cached: no second request


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    server.interrupt = 1
    dest = tmp_path / "model.tar.gz"
    dl.download(server.url, dest, len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[0] is None
    assert server.requests[1] == f"bytes={len(PAYLOAD) // 2}-"


def test_failed_download_leaves_only_the_part_file_and_the_next_call_resumes(server, tmp_path):
    server.interrupt = 1
    dest = tmp_path / "model.tar.gz"
    with pytest.raises(OSError, match="kept and the next call resumes"):
        dl.download(server.url, dest, len(PAYLOAD), attempts=1)
    assert not dest.exists()  # never a partial file under the final name
    part = tmp_path / "model.tar.gz.part"
    assert part.stat().st_size == len(PAYLOAD) // 2
    dl.download(server.url, dest, len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1] == f"bytes={len(PAYLOAD) // 2}-"


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.interrupt, server.honour_range = 1, False
    dest = tmp_path / "model.tar.gz"
    dl.download(server.url, dest)
    assert dest.read_bytes() == PAYLOAD


def test_wrong_size_is_refused_and_nothing_is_kept(server, tmp_path):
    dest = tmp_path / "model.tar.gz"
    with pytest.raises(ValueError, match=f"offers {len(PAYLOAD)} bytes.*expects 1234"):
        dl.download(server.url, dest, 1234)
    assert not dest.exists() and not (tmp_path / "model.tar.gz.part").exists()


def test_unreachable_address_names_it(tmp_path, server):
    missing = server.url.replace("model.tar.gz", "nothing.tar.gz")
    with pytest.raises(OSError, match="nothing.tar.gz.*404"):
        dl.download(missing, tmp_path / "x.tar.gz")


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_once_into_the_cache(tmp_path, cache):
    archive = _archive(tmp_path / "rel.tar.gz", {"rel/model.ckpt.index": b"i", "rel/x": b"x"})
    target = dl.extract_once(archive)
    assert target.parent == cache / "extracted"
    assert (target / "rel" / "model.ckpt.index").read_bytes() == b"i"
    (target / "rel" / "x").write_bytes(b"changed")
    assert dl.extract_once(archive) == target
    assert (target / "rel" / "x").read_bytes() == b"changed"  # not extracted twice
    assert [p.name for p in (cache / "extracted").iterdir()] == [target.name]  # no staging left


def test_unsafe_or_corrupt_archive_is_refused_naming_it(tmp_path, cache):
    bad = _archive(tmp_path / "evil.tar.gz", {"../outside": b"x"})
    with pytest.raises(ValueError, match=r"evil\.tar\.gz: unsafe member"):
        dl.extract_once(bad)
    corrupt = tmp_path / "broken.tar.gz"
    corrupt.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match=r"broken\.tar\.gz: not a readable"):
        dl.extract_once(corrupt)
    assert list((cache / "extracted").iterdir()) == []
