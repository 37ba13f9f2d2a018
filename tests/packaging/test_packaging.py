"""The installed package: what imports without TensorFlow, and that every import is declared.

A quick check in this environment, with TensorFlow hidden by an import hook; the real one is
tests/packaging/test_library_install.py, in a virtual environment without TensorFlow."""

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "jaxseg"
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

# Import name -> distribution name where they differ.
_DISTRIBUTIONS = {
    "PIL": "pillow",
    "absl": "absl-py",
    "ml_collections": "ml-collections",
    "orbax": "orbax-checkpoint",
    "tensorflow": "tensorflow-cpu",
    "tensorflow_datasets": "tensorflow-datasets",
    "skimage": "scikit-image",
    "cv2": "opencv-python-headless",
    "google": "protobuf",
}

_BLOCK_TF = textwrap.dedent(
    """
    import importlib, importlib.abc, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)

    sys.meta_path.insert(0, Blocker())
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    env_path = str(ROOT / "src")
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_TF + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": env_path, "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    )


def test_library_imports_without_tensorflow():
    result = _run(
        """
        for name in ["jaxseg.ops", "jaxseg.models", "jaxseg.losses", "jaxseg.metrics",
                     "jaxseg.inference", "jaxseg.viz", "jaxseg.figures", "jaxseg.train",
                     "jaxseg.weights", "jaxseg.data", "jaxseg.scoring", "jaxseg.segmenter",
                     "jaxseg.zoo", "jaxseg.experiment", "jaxseg.predict", "jaxseg.zoo_cli"]:
            importlib.import_module(name)
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow",
                        "tensorflow_datasets"))
        assert not leaked, leaked
        print("imported")
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported" in result.stdout


def test_data_pipelines_without_tensorflow_say_which_extra():
    for module in ("jaxseg.data.pipeline", "jaxseg.data.builders"):
        result = _run(f"import {module}")
        assert result.returncode != 0, module
        assert "pip install 'jaxseg[data]'" in result.stderr, module


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _names(requirements: list[str]) -> set[str]:
    names = set()
    for req in requirements:
        name = req.split(";")[0]
        for stop in "<>=![ ":
            name = name.split(stop)[0]
        names.add(name.strip().lower().replace("_", "-"))
    return names


def _imported_top_level(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_imported_package_is_declared():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    declared = _names(project["dependencies"]) | _names(extras["data"]) | _names(extras["test"])
    missing = {}
    for path in sorted(SRC.rglob("*.py")):
        for name in _imported_top_level(path):
            if name in sys.stdlib_module_names or name in ("jaxseg", "__future__"):
                continue
            dist = _DISTRIBUTIONS.get(name, name).lower().replace("_", "-")
            if dist not in declared:
                missing.setdefault(dist, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_library_dependencies_exclude_tensorflow_and_test_tools():
    base = _names(_pyproject()["project"]["dependencies"])
    for name in ("tensorflow", "tensorflow-cpu", "tensorflow-datasets", "pytest", "chex"):
        assert name not in base


def test_requirements_txt_covers_every_extra_but_cuda():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    listed = _names([ln for ln in lines if ln.strip() and not ln.startswith(("#", "-"))])
    project = _pyproject()["project"]
    wanted = _names(project["dependencies"])
    for extra in ("data", "test"):
        wanted |= {n for n in _names(project["optional-dependencies"][extra]) if n != "jaxseg"}
    assert wanted <= listed, sorted(wanted - listed)


def _scripts() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


@pytest.mark.parametrize("command", sorted(_scripts()))
def test_console_commands_name_callables(command):
    module_name, function = _scripts()[command].split(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, function))


def test_predict_command_is_declared():
    assert _scripts()["jaxseg-predict"] == "jaxseg.predict:main"
