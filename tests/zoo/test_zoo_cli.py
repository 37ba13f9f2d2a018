"""`python -m jaxseg.zoo list | download NAME` (no network: a local server stands in)."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import threading

import pytest

from jaxseg import zoo
from jaxseg.zoo import registry
from jaxseg.zoo_cli import main


def test_list_prints_every_entry_with_its_published_numbers(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "xception65_coco_voc_trainaug",
        "xception65_coco_voc_trainval",
        "mobilenetv2_coco_voc_trainaug",
        "mobilenetv2_coco_voc_trainval",
        "xception65_cityscapes_trainfine",
        "mobilenetv2_coco_cityscapes_trainfine",
        "xception65_ade20k_train",
        "xception_41",
        "xception_65",
        "xception_71",
        "resnet_v1_50_beta",
        "resnet_v1_101_beta",
    ):
        assert f"\n{name}\n" in f"\n{out}"
    assert "mIoU 82.20 (VOC 2012 val, output stride 16, scale 1.0, no flip)" in out
    assert "mIoU 83.58 (VOC 2012 val, output stride 8, scales [0.5, 0.75, 1.0, 1.25" in out
    assert "pixel accuracy 82.52" in out


def test_published_protocols_are_structured():
    voc = zoo.entry("xception65_coco_voc_trainaug").published
    assert (voc[0].value, voc[0].eval_output_stride, voc[0].eval_scales, voc[0].eval_flip) == (
        82.20,
        16,
        (1.0,),
        False,
    )
    assert (voc[1].value, voc[1].eval_output_stride, voc[1].eval_flip) == (83.58, 8, True)
    assert voc[1].eval_scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    city = zoo.entry("mobilenetv2_coco_cityscapes_trainfine").published[1]
    assert (city.value, city.eval_scales) == (73.57, (0.75, 1.0, 1.25))


def test_download_unknown_name_fails_with_the_known_names(capsys):
    assert main(["download", "xception_99"]) == 1
    err = capsys.readouterr().err
    assert "xception_99" in err and "xception_65" in err


def test_download_fetches_into_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    served = tmp_path / "served"
    served.mkdir()
    (served / "x.tar.gz").write_bytes(b"0123456789" * 1000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/x.tar.gz"
        local = dataclasses.replace(registry.ENTRIES["xception_41"], urls=(url,), size=10_000)
        monkeypatch.setitem(registry.ENTRIES, "xception_41", local)
        assert main(["download", "xception_41"]) == 0
        path = capsys.readouterr().out.strip()
        assert path.endswith(local.filename)
        assert open(path, "rb").read() == b"0123456789" * 1000
        wrong = dataclasses.replace(local, filename="y.tar.gz", size=10)
        monkeypatch.setitem(registry.ENTRIES, "xception_41", wrong)
        assert main(["download", "xception_41"]) == 1
        assert "expects 10" in capsys.readouterr().err
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_load_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        zoo.load("xception65_coco_voc_trainaug", checkpoint=tmp_path / "nothing_here")
