"""The library install, run where TensorFlow is not installed: released models and run folders.

`JAXSEG_LIBRARY_PYTHON` names the python of a virtual environment made by `pip install .` with
no extras (CI: `.ci/run` creates `.venv-lib` and sets it). Everything the library promises
without TensorFlow runs there, in subprocesses: `jaxseg-zoo list`, `download` and `predict`,
`jaxseg-predict` on `zoo:NAME` and on a training run folder, and every release loader
(TF-slim checkpoints read without TensorFlow, Caffe models). The files they read are written
here, in the test process, which has TensorFlow and OpenCV and computes the expected outputs
independently: TensorFlow's official DeepLab graph (`tests/weights/test_tf_slim.py`), OpenCV's
Caffe runtime (`tests/weights/test_caffe_opencv.py`) and a plain `model.apply`.

No subprocess reaches the network: the release is seeded into the download cache and the
proxy variables point at a closed port of 127.0.0.1, so an attempted download fails.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
# CI sets this (.ci/run) to the python of `.venv-lib`, a TensorFlow-free `pip install .`.
LIBRARY_PYTHON = os.environ.get("JAXSEG_LIBRARY_PYTHON", "")

pytestmark = pytest.mark.skipif(
    not LIBRARY_PYTHON,
    reason="JAXSEG_LIBRARY_PYTHON is not set: .ci/run sets it to the python of .venv-lib, "
    "a virtual environment with `pip install .` and no extras",
)

NAME = "mobilenetv2_coco_voc_trainaug"  # the release the commands run (TF-slim MobileNetV2)
ARCHIVE = "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz"
CROP = 65  # evaluation canvas for the tests (the release's own is 513)
RTOL = 1e-4  # relative error of logits, as in the TF-slim and OpenCV comparisons


def _module(path: Path, name: str):
    """A test-helper file loaded once under `name` (shared with other tests that load it)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:  # e.g. its importorskip: no half-loaded module stays behind
            del sys.modules[name]
            raise
    return sys.modules[name]


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def _confident(logits: np.ndarray, margin: float = 1e-3) -> np.ndarray:
    """Pixels whose best class leads the second by more than `margin` (argmax is stable)."""
    top2 = np.sort(logits, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0] > margin


# --- the library environment --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Library:
    """The TensorFlow-free environment: its python, commands and a fresh cache."""

    python: Path
    env: dict
    cache: Path

    def run(self, *command, timeout: float = 300, status: int = 0) -> subprocess.CompletedProcess:
        program = command[0]
        if not program.startswith("/"):
            program = str(self.python.parent / program)  # bin/jaxseg-zoo, bin/jaxseg-predict
        result = subprocess.run(
            [program, *map(str, command[1:])],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=self.cache.parent,
        )
        if result.returncode != status:
            pytest.fail(
                f"{' '.join(map(str, command))} exited with {result.returncode}\n"
                f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"
            )
        return result


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Library:
    root = tmp_path_factory.mktemp("library")
    # Not resolved: the venv's python is a link to the system one, and only the link's
    # location makes it the venv's.
    python = Path(os.path.abspath(LIBRARY_PYTHON))
    if not python.exists():
        pytest.fail(f"JAXSEG_LIBRARY_PYTHON={LIBRARY_PYTHON} does not exist (see .ci/run)")
    closed = "http://127.0.0.1:9"  # the discard port: any download attempt fails at once
    env = {
        "PATH": f"{python.parent}:/usr/bin:/bin",
        "HOME": str(root / "home"),
        "TMPDIR": str(root),
        "JAXSEG_CACHE": str(root / "cache"),
        "JAX_PLATFORMS": "cpu",
        "LANG": "C.UTF-8",
        **{k: closed for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
    }
    (root / "home").mkdir()
    (root / "cache" / "downloads").mkdir(parents=True)
    return Library(python, env, root / "cache")


def test_the_environment_has_no_tensorflow_and_the_installed_jaxseg(library):
    """TensorFlow and TFDS cannot be imported there (the environment is honest), and jaxseg is
    the package pip installed (not this checkout's src/), with the files of this checkout."""
    script = textwrap.dedent(
        """
        import importlib, json, sys, sysconfig
        out = {}
        for name in ("tensorflow", "tensorflow_datasets"):
            try:
                importlib.import_module(name)
                out[name] = "imported"
            except ImportError as error:
                out[name] = f"{type(error).__name__}: {error}"
        import jaxseg
        out["file"] = jaxseg.__file__
        out["site"] = sysconfig.get_paths()["purelib"]
        print(json.dumps(out))
        """
    )
    found = json.loads(library.run(str(library.python), "-c", script).stdout)
    for name in ("tensorflow", "tensorflow_datasets"):
        assert found[name] == f"ModuleNotFoundError: No module named '{name}'"
    installed = Path(found["file"]).parent
    assert installed == Path(found["site"]) / "jaxseg", found
    ours = {p.relative_to(ROOT / "src" / "jaxseg") for p in (ROOT / "src/jaxseg").rglob("*.py")}
    theirs = {p.relative_to(installed) for p in installed.rglob("*.py")}
    stale = sorted(
        str(p)
        for p in ours | theirs
        if p not in ours
        or p not in theirs
        or (installed / p).read_bytes() != (ROOT / "src/jaxseg" / p).read_bytes()
    )
    assert not stale, (
        f"{installed} is not this checkout's jaxseg (differs in {stale[:5]}): reinstall with "
        f"`{library.python} -m pip install .` (after `rm -rf build`)"
    )


# --- a DeepLab release: the commands ------------------------------------------------------------


@pytest.fixture(scope="module")
def tf_slim_tests():
    """tests/weights/test_tf_slim.py: the official graphs in TensorFlow ops."""
    pytest.importorskip("tensorflow")
    return _module(TESTS / "weights" / "test_tf_slim.py", "_library_tf_slim_official")


@pytest.fixture(scope="module")
def release(tf_slim_tests, library, tmp_path_factory):
    """The MobileNetV2 VOC release with random weights, written by TensorFlow and packed as the
    authors pack it, seeded into the library's download cache; `(archive, official, case)`."""
    root = tmp_path_factory.mktemp("release")
    official = tf_slim_tests.Official(seed=41)
    arch = dataclasses.replace(tf_slim_tests.MOBILENETV2.arch, num_classes=21)
    case = dataclasses.replace(tf_slim_tests.MOBILENETV2, arch=arch)
    logits = tf_slim_tests.official_logits(
        official, case, np.zeros((CROP, CROP, 3), np.uint8), (CROP, CROP), 16
    )
    # Background competes with the other classes, so that the labels are not all one class.
    margin = np.max(logits[..., 1:], -1) - logits[..., 0]
    official.variables["logits/semantic/biases"][0] += np.median(margin)
    folder = root / "deeplabv3_mnv2_pascal_train_aug"
    folder.mkdir()
    tf_slim_tests.write_checkpoint(official.variables, folder / "model.ckpt-30000")
    archive = root / ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    (library.cache / "downloads" / ARCHIVE).write_bytes(archive.read_bytes())
    return archive, official, case


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder with two RGB images smaller than the canvas (PNG: decoded alike by any
    Pillow, where JPEG decoders may differ between the two environments)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(17)
    for name, size in (("a.png", (48, 64)), ("b.png", (37, 29))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_zoo_list_and_download_from_the_cache(library, release):
    listed = library.run("jaxseg-zoo", "list").stdout
    for name in (NAME, "xception65_coco_voc_trainaug", "fcn8s_heavy_pascal", "segnet_basic_camvid"):
        assert f"{name}\n" in listed
    printed = library.run("jaxseg-zoo", "download", NAME).stdout
    assert printed.strip() == str(library.cache / "downloads" / ARCHIVE)
    # Scoring reads a TFDS dataset: without TensorFlow a short error names the extra.
    command = ("jaxseg-zoo", "evaluate", NAME, "--dataset", "voc_segmentation/2012")
    error = library.run(*command, status=2).stderr
    assert "pip install 'jaxseg[data]'" in error and len(error.splitlines()) <= 3, error


@pytest.mark.parametrize("command", ["jaxseg-zoo predict", "jaxseg-predict --model"])
def test_predict_with_the_release_matches_tensorflow(
    library, release, photos, tf_slim_tests, tmp_path, command
):
    """Label PNGs of `jaxseg-zoo predict NAME` (the cached download) and `jaxseg-predict
    --model zoo:NAME --checkpoint ARCHIVE`: the argmax of TensorFlow's official logits."""
    from PIL import Image

    archive, official, case = release
    out = tmp_path / "out"
    args = ["--input", photos, "--output", out, "--crop-size", CROP]
    if command == "jaxseg-zoo predict":
        library.run("jaxseg-zoo", "predict", NAME, *args)
    else:
        library.run("jaxseg-predict", "--model", f"zoo:{NAME}", "--checkpoint", archive, *args)
    assert sorted(p.name for p in out.iterdir()) == [
        "a.png",
        "a_overlay.jpg",
        "b.png",
        "b_overlay.jpg",
    ]
    classes = set()
    for name in ("a.png", "b.png"):
        image = np.asarray(Image.open(photos / name).convert("RGB"))
        logits = tf_slim_tests.official_logits(official, case, image, (CROP, CROP), 16)
        labels = np.asarray(Image.open(out / f"{Path(name).stem}.png"))
        keep = _confident(logits)
        assert keep.mean() > 0.99
        np.testing.assert_array_equal(labels[keep], np.argmax(logits, -1)[keep])
        classes |= set(np.unique(labels).tolist())
    assert len(classes) > 1


# --- every release loader -----------------------------------------------------------------------

# Runs in the library environment: each job's loader on its file, logits of its image.
LOADERS = """
import json, sys

import numpy as np

from jaxseg import zoo
from jaxseg.weights.tf_slim import DeepLabArch
from jaxseg.zoo import caffe_models, deeplab_models

def tuples(options):  # JSON has lists only
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


jobs = json.loads(open(sys.argv[1]).read())
out = {}
for key, job in jobs.items():
    loader, path, kwargs = job["loader"], job["path"], tuples(job["kwargs"])
    if loader == "zoo.load":
        segmenter = zoo.load(job["name"], checkpoint=path, **kwargs)
    elif loader == "deeplab_models.load_release":
        release = deeplab_models.Release(DeepLabArch(**tuples(job["arch"])), **kwargs)
        segmenter = deeplab_models.load_release(release, path)
    else:  # a Caffe entry's release with smaller sizes
        release = caffe_models.RELEASES[job["release"]].with_sizes(**tuples(job["sizes"]))
        segmenter = caffe_models.load_release(release, path, **tuples(kwargs))
    for i, image in enumerate(job["images"]):
        out[f"{key}/{i}"] = segmenter.logits(np.load(image))
np.savez(sys.argv[2], **out)
"""


class Jobs:
    """Release files written here and what the library should compute from them."""

    def __init__(self, root: Path):
        self.root = root
        self.jobs: dict[str, dict] = {}
        self.expected: dict[str, np.ndarray] = {}

    def add(self, key, loader, path, kwargs, pairs, **extra):
        """`pairs`: (uint8 image, expected logits) computed by an independent runtime."""
        images = []
        for i, (image, expected) in enumerate(pairs):
            images.append(str(self.root / f"{key}-{i}.npy"))
            np.save(images[-1], image)
            self.expected[f"{key}/{i}"] = expected
        self.jobs[key] = dict(loader=loader, path=str(path), kwargs=kwargs, images=images, **extra)

    def folder(self, key: str) -> Path:
        (self.root / key).mkdir()
        return self.root / key


def _tf_slim_jobs(jobs: Jobs, tf_slim_tests, release) -> None:
    """The release through `zoo.load` (its registry entry), and a reduced-depth Xception-65
    DeepLab v3+ (decoder, separable ASPP) through the DeepLab loader."""
    archive, official, case = release
    image = np.random.default_rng(2).integers(0, 256, (50, 61, 3), dtype=np.uint8)
    reference = tf_slim_tests.official_logits(official, case, image, (CROP, CROP), 16)
    jobs.add("zoo.load", "zoo.load", archive, {"crop_size": CROP}, [(image, reference)], name=NAME)

    xception = dataclasses.replace(tf_slim_tests.XCEPTION65.arch, num_classes=21)
    case = dataclasses.replace(tf_slim_tests.XCEPTION65, arch=xception)
    official = tf_slim_tests.Official(seed=43)
    image = np.random.default_rng(3).integers(0, 256, (41, 57, 3), dtype=np.uint8)
    reference = tf_slim_tests.official_logits(official, case, image, (CROP, CROP), 16)
    prefix = tf_slim_tests.write_checkpoint(official.variables, jobs.folder("x65") / "model.ckpt")
    arch = dataclasses.asdict(xception)
    kwargs = {"labels": "voc", "eval_crop": [CROP, CROP]}
    jobs.add(
        "xception65", "deeplab_models.load_release", prefix, kwargs, [(image, reference)], arch=arch
    )


# Each Caffe entry's release runs on a net in its layout (sizes reduced where the architecture
# allows, `CaffeRelease.with_sizes`), with OpenCV's Caffe runtime on the same file as the
# reference. The nets follow tests/weights/test_caffe_opencv.py (`co`), whose helpers and
# mean pixels (written there from the authors' files) they use.
CAFFE = "caffe_models.load_release"


def _bgr_minus(image: np.ndarray, mean) -> np.ndarray:
    return image[..., ::-1].astype(np.float32) - np.float32(mean)


def _opencv(jobs: Jobs, caffe_proto, p, key: str, net_input: np.ndarray):
    """Writes `p` into a folder of its own; `(caffemodel, OpenCV's output on net_input)`."""
    prototxt, caffemodel = p.write(jobs.folder(key))
    return caffemodel, caffe_proto.opencv_forward(prototxt, caffemodel, net_input)


def _fcn_jobs(jobs: Jobs, caffe_proto, co) -> None:
    """FCN-32s / 16s / 8s: VGG16 with pad 100, fc6 7x7 VALID, learnt deconvolutions, crops."""
    h, w, classes, fc = 33, 37, 5, 32
    for stride in (32, 16, 8):
        p = caffe_proto.Prototxt((1, 3, h, w), seed=stride)
        pool5 = co._vgg16(p, "data", lambda name, x, p=p: p.pool(name, x, 2, 2))
        x = p.conv("fc7", p.conv("fc6", pool5, fc, 7), fc, 1)
        up = score = p.conv("score_fr", x, classes, 1, relu=False)
        skips = {32: [], 16: [("pool4", 5)], 8: [("pool4", 5), ("pool3", 9)]}[stride]
        for i, (pool, offset) in enumerate(skips):
            up = p.deconv("upscore2" if i == 0 else "upscore_pool4", score, 4, 2)
            skip = p.conv(f"score_{pool}", pool, classes, 1, relu=False)
            score = p.eltwise(f"fuse_{pool}", [up, p.crop(f"score_{pool}c", skip, up, offset)])
        k, offset = {32: (64, 19), 16: (32, 27), 8: (16, 31)}[stride]
        p.crop(
            "score",
            p.deconv(f"upscore{stride if stride != 32 else ''}", score, k, stride),
            "data",
            offset,
        )
        image = co._image(h, w, stride)
        net_input = _bgr_minus(image, co.FCN_MEAN_BGR)
        caffemodel, theirs = _opencv(jobs, caffe_proto, p, f"fcn{stride}s", net_input)
        sizes = {"num_classes": classes, "fc_features": fc}
        release = f"fcn{stride}s_heavy_pascal"
        jobs.add(
            f"fcn{stride}s", CAFFE, caffemodel, {}, [(image, theirs)], release=release, sizes=sizes
        )


def _deeplab_caffe_jobs(jobs: Jobs, caffe_proto, co) -> None:
    """DeepLab v1 LargeFOV, v2 VGG16 ASPP-L and v2 ResNet with its input-scale branches."""
    # v1, as the release stores it: a V1 (`layers`) file with 4-D blobs.
    h, w, classes, fc = 42, 50, 4, 16
    p = caffe_proto.Prototxt((1, 3, h, w), seed=11)
    x = p.pool("pool5a", co._deeplab_vgg16(p), 3, 1, pad=1, kind="AVE")
    x = p.conv("fc7", p.conv("fc6", x, fc, 3, pad=12, dilation=12), fc, 1)
    x = p.conv("fc8_voc12", x, classes, 1, relu=False)
    p._layer("fc8_interp", "Interp", [x], "fc8_interp", "interp_param { zoom_factor: 8 }")
    folder = jobs.folder("deeplab_v1")
    (folder / "deploy.prototxt").write_text(p.text())
    caffemodel = folder / "v1.caffemodel"
    caffe_proto.write_caffemodel(caffemodel, [(n, 4, a) for n, _, a in p.blobs], v1=True)
    image = co._image(h, w, 11)
    theirs = caffe_proto.opencv_forward(
        folder / "deploy.prototxt", caffemodel, co._deeplab_input(image)
    )[:h, :w]
    sizes = {"num_classes": classes, "fc_features": fc}
    jobs.add(
        "deeplab_v1",
        CAFFE,
        caffemodel,
        {"crop_size": [h, w]},
        [(image, theirs)],
        release="deeplab_largefov_voc12",
        sizes=sizes,
    )

    # v2 VGG16 ASPP-L: four LargeFOV branches summed.
    h, w, classes, fc = 40, 35, 3, 8
    p = caffe_proto.Prototxt((1, 3, h, w), seed=12)
    pool5 = co._deeplab_vgg16(p)
    scores = []
    for i, rate in enumerate((6, 12, 18, 24), start=1):
        x = p.conv(f"fc6_{i}", pool5, fc, 3, pad=rate, dilation=rate)
        scores.append(
            p.conv(f"fc8_voc12_{i}", p.conv(f"fc7_{i}", x, fc, 1), classes, 1, relu=False)
        )
    p.interp("fc8_interp", p.eltwise("fc8_voc12", scores), "zoom_factor: 8")
    image = co._image(h, w, 12)
    caffemodel, theirs = _opencv(jobs, caffe_proto, p, "deeplab_v2_vgg16", co._deeplab_input(image))
    sizes = {"num_classes": classes, "fc_features": fc}
    jobs.add(
        "deeplab_v2_vgg16",
        CAFFE,
        caffemodel,
        {"crop_size": [h, w]},
        [(image, theirs[:h, :w])],
        release="deeplabv2_vgg16_voc12",
        sizes=sizes,
    )

    # v2 ResNet (reduced depth and width): three input scales fused by max.
    h, w, stages, base = 33, 65, (1, 2, 2, 1), 4
    p = caffe_proto.Prototxt((1, 3, h, w), seed=13)
    p.classes = 3
    fused = [co._caffe_resnet(p, stages, base)]
    for scale, suffix in ((0.75, "_res075"), (0.5, "_res05")):
        size = (int((h - 1) * scale) + 1, int((w - 1) * scale) + 1)
        p.interp("data" + suffix, "data", f"height: {size[0]} width: {size[1]}")
        branch = co._caffe_resnet(p, stages, base, suffix)
        fused.append(p.interp(f"fc1{suffix}_interp", branch, "height: 5 width: 9"))
    p.interp("fc_fusion_interp", p.eltwise("fc_fusion", fused, op="MAX"), "zoom_factor: 8")
    image = co._image(h, w, 13)
    caffemodel, theirs = _opencv(
        jobs, caffe_proto, p, "deeplab_v2_resnet", co._deeplab_input(image)
    )
    sizes = {"num_classes": 3, "stage_sizes": stages, "base_width": base}
    jobs.add(
        "deeplab_v2_resnet",
        CAFFE,
        caffemodel,
        {"crop_size": [h, w]},
        [(image, theirs)],
        release="deeplabv2_resnet101_voc12",
        sizes=sizes,
    )


def _segnet_jobs(jobs: Jobs, caffe_proto, co) -> None:
    """SegNet (the driving web demo) and SegNet-Basic: pooling indices, inference BN."""
    import cv2

    cv2.dnn_registerLayer("Upsample", co._Upsample)  # caffe-segnet's layer, in numpy
    try:
        # SegNet: VGG16 encoder-decoder, 3x3 classifier, raw BGR input.
        h, w, classes = 45, 38, 12
        p = caffe_proto.Prototxt((1, 3, h, w), seed=14)
        x, convs = "data", {}
        widths = co.p_widths()
        for b, block in enumerate(widths, start=1):
            for i, width in enumerate(block, start=1):
                x = co._segnet_bn(
                    p, f"conv{b}_{i}_bn", p.conv(f"conv{b}_{i}", x, width, 3, pad=1, relu=False)
                )
            convs[b] = x
            x, _ = p.pool(f"pool{b}", x, 2, 2, tops=[f"pool{b}", f"pool{b}_mask"])
        for b in range(5, 0, -1):
            x = co._unpool(p, f"upsample{b}", x, f"pool{b}_mask", convs[b])
            outs = list(widths[b - 1][1:]) + ([widths[b - 2][-1]] if b > 1 else [])
            for i, width in zip(range(len(widths[b - 1]), 0, -1), outs, strict=False):
                x = p.conv(f"conv{b}_{i}_D", x, width, 3, pad=1, relu=False)
                x = co._segnet_bn(p, f"conv{b}_{i}_D_bn", x)
        p.conv("conv1_1_D", x, classes, 3, pad=1, relu=False)
        image = co._image(h, w, 14)
        caffemodel, theirs = _opencv(
            jobs, caffe_proto, p, "segnet", image[..., ::-1].astype(np.float32)
        )
        jobs.add(
            "segnet",
            CAFFE,
            caffemodel,
            {},
            [(image, theirs)],
            release="segnet_driving_webdemo",
            sizes={"num_classes": classes},
        )

        # SegNet-Basic at the release's size (64 features, 11 classes): through `zoo.load`.
        h, w, width = 45, 60, 64
        p = caffe_proto.Prototxt((1, 3, h, w), seed=15)
        p._layer(
            "norm", "LRN", ["data"], "norm", "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }"
        )
        p.channels["norm"] = 3
        x, convs = "norm", {}
        for i in range(1, 5):
            x = p.conv(f"conv{i}", x, width, 7, pad=3, relu=False)
            convs[i] = co._segnet_bn(p, f"conv{i}_bn", x)
            x, _ = p.pool(f"pool{i}", convs[i], 2, 2, tops=[f"pool{i}", f"pool{i}_mask"])
        for i in range(4, 0, -1):
            x = co._unpool(p, f"upsample{i}", x, f"pool{i}_mask", convs[i])
            x = p.conv(f"conv_decode{i}", x, width, 7, pad=3, relu=False)
            x = co._segnet_bn(p, f"conv_decode{i}_bn", x, relu=False)
        p.conv("conv_classifier", x, 11, 1, relu=False)
        image = co._image(h, w, 15)
        caffemodel, theirs = _opencv(
            jobs, caffe_proto, p, "segnet_basic", image[..., ::-1].astype(np.float32)
        )
        jobs.add(
            "segnet_basic",
            "zoo.load",
            caffemodel,
            {},
            [(image, theirs)],
            name="segnet_basic_camvid",
        )
    finally:
        cv2.dnn_unregisterLayer("Upsample")


def _vgg16_job(jobs: Jobs, caffe_proto, co) -> None:
    """VGG16 (ILSVRC): fc6-fc8 stored as InnerProduct, one 224 x 224 window."""
    import cv2

    classes, fc = 10, 16
    p = caffe_proto.Prototxt((1, 3, 224, 224), seed=16)
    x = co._vgg16(p, "data", lambda name, x: p.pool(name, x, 2, 2))
    p.lines = [line.replace("pad: 100", "pad: 1") for line in p.lines]
    for name, out, fan_in in (("fc6", fc, 512 * 49), ("fc7", fc, fc), ("fc8", classes, fc)):
        p._layer(name, "InnerProduct", [x], name, f"inner_product_param {{ num_output: {out} }}")
        bias = (p.rng.normal(size=out) * 0.1).astype("f4")
        p.blobs.append((name, "InnerProduct", [p.weights(out, fan_in), bias]))
        x = name
        if name != "fc8":
            p._layer(f"relu_{name}", "ReLU", [x], x)
    prototxt, caffemodel = p.write(jobs.folder("vgg16"))
    image = co._image(224, 224, 16)
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(np.ascontiguousarray(_bgr_minus(image, co.VGG_MEAN_BGR).transpose(2, 0, 1)[None]))
    theirs = np.broadcast_to(net.forward().reshape(classes), (224, 224, classes))  # one window
    sizes = {"num_classes": classes, "fc_features": fc}
    jobs.add("vgg16", CAFFE, caffemodel, {}, [(image, theirs)], release="vgg16_ilsvrc", sizes=sizes)


def _loader_name(load) -> str:
    """What an entry's `load` runs: `deeplab_models.load_release`, and for a Caffe release
    `caffe_models.load_release` with its converter (`.../fcn_spec`), one per Caffe layout."""
    func = getattr(load, "func", load)
    name = f"{func.__module__.rpartition('.')[2]}.{func.__name__}"
    release = load.args[0] if getattr(load, "args", ()) else None
    converter = getattr(release, "converter", None)
    return f"{name}/{converter.__name__}" if converter is not None else name


def test_every_release_loader_matches_the_reference_runtimes(
    library, release, tf_slim_tests, tmp_path
):
    """One script in the library environment runs every loader: the TF-slim checkpoints
    (TensorFlow's logits) and each Caffe format (OpenCV's Caffe runtime on the same file)."""
    pytest.importorskip("cv2")
    from jaxseg import zoo

    caffe_proto = _module(TESTS / "weights" / "caffe_proto.py", "jaxseg_tests_caffe_proto")
    co = _module(TESTS / "weights" / "test_caffe_opencv.py", "_caffe_opencv_networks")
    jobs = Jobs(tmp_path)
    _tf_slim_jobs(jobs, tf_slim_tests, release)
    for add in (_fcn_jobs, _deeplab_caffe_jobs, _segnet_jobs, _vgg16_job):
        add(jobs, caffe_proto, co)
    # Every loader of the zoo's entries runs (a new release format must be added here).
    loaders = {_loader_name(entry.load) for entry in zoo.ENTRIES.values()}
    covered = {
        _loader_name(zoo.entry(job["name"]).load)
        if job["loader"] == "zoo.load"
        else _loader_name(zoo.entry(job["release"]).load)
        if "release" in job
        else job["loader"]
        for job in jobs.jobs.values()
    }
    assert covered == loaders
    (tmp_path / "jobs.json").write_text(json.dumps(jobs.jobs))
    (tmp_path / "loaders.py").write_text(LOADERS)
    library.run(
        str(library.python),
        tmp_path / "loaders.py",
        tmp_path / "jobs.json",
        tmp_path / "logits.npz",
    )
    with np.load(tmp_path / "logits.npz") as found:
        assert sorted(found.files) == sorted(jobs.expected)
        errors = {k: _relative_error(found[k], v) for k, v in jobs.expected.items()}
    assert max(errors.values()) <= RTOL, errors
    # About 0.5 GB of caffemodels (full-width VGG16 trunks): not kept in pytest's old tmp dirs.
    for folder in tmp_path.iterdir():
        if folder.is_dir():
            shutil.rmtree(folder)


# --- a training run folder ----------------------------------------------------------------------


def test_predict_on_a_run_folder(library, tmp_path):
    """`jaxseg-predict --workdir RUN`: the run's experiment file, config and checkpoint (written
    here as training writes them), the labels of `load_segmenter(RUN)` and of the plain model."""
    import jax.numpy as jnp
    from PIL import Image

    from jaxseg.experiment import load_segmenter

    cli = _module(TESTS / "inference" / "test_predict_cli.py", "_predict_cli_runs")
    experiment = cli._write_experiment(tmp_path / "tiny_voc.py", num_classes=3)
    params = cli._params(3)
    _, _, model = cli._save_run(tmp_path / "run", experiment, params)
    photos = tmp_path / "photos"
    photos.mkdir()
    image = np.random.default_rng(23).integers(0, 256, (33, 45, 3), dtype=np.uint8)
    Image.fromarray(image).save(photos / "odd.png")
    out = tmp_path / "out"
    library.run("jaxseg-predict", "--workdir", tmp_path / "run", "--input", photos, "--output", out)
    labels = np.asarray(Image.open(out / "odd.png"))
    assert (out / "odd_overlay.jpg").is_file()
    np.testing.assert_array_equal(labels, load_segmenter(tmp_path / "run")(image))
    # The run's normalisation ("inception": x / 127.5 - 1) and the 1x1 net, applied plainly.
    logits = model.apply({"params": params}, jnp.asarray(image[None] / 127.5 - 1.0, jnp.float32))
    np.testing.assert_array_equal(labels, np.argmax(np.asarray(logits[0]), -1))
    assert len(np.unique(labels)) == 3
