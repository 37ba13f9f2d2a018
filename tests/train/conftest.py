"""Engine tests: the tiny training run (`tinyrun` fixture), and compiled programs shared between
runs through JAX's persistent compilation cache.

`tinyrun` is `tests/train/tinyrun.py` loaded once per session (test modules cannot import a
sibling file under `--import-mode=importlib`, but every test of this folder can take the
fixture); subprocess tests run the same file as a script, `tinyrun.__file__`.

The tests train the same tiny programs many times (reference runs, resumed runs, subprocesses);
compiling dominates their cost on a small CPU machine. The cache is keyed by the exact program,
so it changes nothing but speed. It is switched on only while a module of this folder runs, for
this process and (through the environment) the subprocesses the tests start.
"""

import importlib.util
import os
import pathlib
import sys

import jax
import pytest

_SETTINGS = {
    "jax_compilation_cache_dir": None,  # filled in per session
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}


@pytest.fixture(scope="session")
def _xla_cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("xla_cache"))


@pytest.fixture(scope="module", autouse=True)
def _persistent_compilation_cache(_xla_cache_dir):
    settings = dict(_SETTINGS, jax_compilation_cache_dir=_xla_cache_dir)
    previous = {name: getattr(jax.config, name) for name in settings}
    previous_env = {name.upper(): os.environ.get(name.upper()) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
        os.environ[name.upper()] = str(value)
    yield
    for name, value in previous.items():
        jax.config.update(name, value)
    for name, value in previous_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


_TINYRUN = pathlib.Path(__file__).with_name("tinyrun.py")


@pytest.fixture(scope="session")
def tinyrun():
    """The tiny experiment module (`tinyrun.py`): `tiny_config`, `tiny_net`, `run`, ..."""
    name = "jaxseg_tests_train_tinyrun"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _TINYRUN)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
