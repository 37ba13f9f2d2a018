"""Failures a user meets end in a few lines with the documented status, and nothing is deleted:
a full disk while checkpointing or logging, an unwritable workdir, a corrupt or incomplete
checkpoint. The full traceback appears only with JAXSEG_DEBUG=1."""

import errno
import os
import pathlib
import shutil
import subprocess
import sys

import orbax.checkpoint as ocp
import pytest

from jaxseg import train

# What tensorstore raises (through orbax) when a checkpoint write meets a full disk.
TENSORSTORE_ENOSPC = (
    'RESOURCE_EXHAUSTED: Error writing local file "{path}/_sharding": Failed writing: '
    '"{path}/_sharding.__lock": Failed to write 4525 bytes to file 6: No space left on '
    "device [os_error_code='28']"
)


def _run_main(tinyrun, workdir, config, capsys, **kwargs):
    """tinyrun through `train.handle_errors`, as an experiment's entry point: (status, stderr)."""
    with pytest.raises(SystemExit) as info:
        train.handle_errors(tinyrun.run)(str(workdir), config, **kwargs)
    return info.value.code, capsys.readouterr().err


def _message_lines(err):
    """The non-empty lines of stderr, without the progress bar's."""
    lines = err.replace("\r", "\n").splitlines()
    return [line for line in lines if line.strip() and "%|" not in line]


def _snapshot(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in pathlib.Path(folder).rglob("*")
    }


@pytest.fixture
def full_disk_at_step_4(monkeypatch):
    """Checkpoint saves from step 4 on fail as a full disk does (step 2 succeeds)."""
    real_save = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        if step >= 4:
            path = f"{self.directory}/{step}.orbax-checkpoint-tmp/state"
            raise ValueError(TENSORSTORE_ENOSPC.format(path=path))
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)


def test_full_disk_while_checkpointing_says_so_in_a_few_lines(
    tmp_path, capsys, monkeypatch, full_disk_at_step_4, tinyrun
):
    monkeypatch.delenv("JAXSEG_DEBUG", raising=False)
    config = tinyrun.tiny_config(num_train_steps=6)
    code, err = _run_main(tinyrun, tmp_path, config, capsys)
    assert code == 1
    message = "\n".join(_message_lines(err))
    assert "Traceback" not in err and len(_message_lines(err)) <= 2, err
    assert "CheckpointWriteError: writing checkpoint 4" in message
    assert "the disk is full" in message and str(tmp_path / "checkpoints") in message
    assert "checkpoint 2 and older are intact" in message
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]  # kept, resumable


def test_debug_variable_adds_the_traceback(
    tmp_path, capsys, monkeypatch, full_disk_at_step_4, tinyrun
):
    monkeypatch.setenv("JAXSEG_DEBUG", "1")
    code, err = _run_main(tinyrun, tmp_path, tinyrun.tiny_config(num_train_steps=6), capsys)
    assert code == 1
    assert "Traceback (most recent call last)" in err and "os_error_code='28'" in err
    assert err.strip().splitlines()[-1].startswith("CheckpointWriteError: writing checkpoint 4")


def test_full_disk_while_logging(tmp_path, capsys, monkeypatch, tinyrun):
    monkeypatch.delenv("JAXSEG_DEBUG", raising=False)
    jsonl = tmp_path / "metrics.jsonl"

    def scalars(self, step, values):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(jsonl))

    monkeypatch.setattr(train.MetricLogger, "scalars", scalars)
    code, err = _run_main(tinyrun, tmp_path, tinyrun.tiny_config(num_train_steps=4), capsys)
    assert code == 1
    assert "Traceback" not in err and len(_message_lines(err)) <= 2, err
    assert "the run stopped: the disk is full: free space, or choose a folder on another" in err
    assert f"disk ({jsonl})" in err
    assert "JAXSEG_DEBUG=1" in err


def test_unwritable_workdir_exits_2(tmp_path, capsys, monkeypatch, tinyrun):
    monkeypatch.delenv("JAXSEG_DEBUG", raising=False)
    workdir = tmp_path / "runs" / "x"
    real_makedirs = os.makedirs

    def makedirs(name, *args, **kwargs):  # root ignores permissions: refuse as a read-only dir
        if str(name).startswith(str(tmp_path / "runs")):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(name))
        return real_makedirs(name, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", makedirs)
    code, err = _run_main(tinyrun, workdir, tinyrun.tiny_config(num_train_steps=2), capsys)
    assert code == 2
    assert "Traceback" not in err and len(_message_lines(err)) <= 2, err
    assert "permission denied" in err and str(tmp_path / "runs") in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tinyrun):
    """A 4-step run with checkpoints 2 and 4."""
    workdir = tmp_path_factory.mktemp("trained")
    tinyrun.run(str(workdir), tinyrun.tiny_config(num_train_steps=4))
    ckpts = train.Checkpoints(workdir / "checkpoints")
    steps = ckpts.all_steps()
    ckpts.close()
    assert steps == [4]  # checkpoints without scores are kept only while latest
    return workdir


def test_corrupt_checkpoint_short_message_nothing_deleted(
    trained, tmp_path, capsys, monkeypatch, tinyrun
):
    monkeypatch.delenv("JAXSEG_DEBUG", raising=False)
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    shutil.copytree(workdir / "checkpoints" / "4", workdir / "checkpoints" / "2")  # an older one
    for path in (workdir / "checkpoints" / "4" / "state").rglob("*"):
        if path.is_file() and "manifest" not in path.name and path.suffix != ".json":
            path.write_bytes(b"garbage")
    before = _snapshot(workdir / "checkpoints")
    code, err = _run_main(tinyrun, workdir, tinyrun.tiny_config(num_train_steps=8), capsys)
    assert code == 1
    assert "Traceback" not in err and len(_message_lines(err)) <= 3, err
    assert f"checkpoint {workdir / 'checkpoints' / '4'} could not be read" in err
    assert "To resume from checkpoint 2" in err and "Nothing was deleted" in err
    assert len(max(err.splitlines(), key=len)) < 600  # not TensorStore's whole spec
    assert _snapshot(workdir / "checkpoints") == before


def test_checkpoint_without_signature_is_named(trained, tmp_path, capsys, tinyrun):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    shutil.rmtree(workdir / "checkpoints" / "4" / "signature")
    before = _snapshot(workdir)
    code, err = _run_main(tinyrun, workdir, tinyrun.tiny_config(num_train_steps=8), capsys)
    assert code == 1
    assert str(workdir / "checkpoints" / "4" / "signature") in err
    assert "missing or unreadable" in err and "Nothing was overwritten" in err
    assert len(_message_lines(err)) <= 3, err  # no extra orbax warning
    assert _snapshot(workdir) == before


def _mount_tiny_tmpfs(path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


def test_really_full_disk_in_a_subprocess(tmp_path, tinyrun):
    """A 48 KiB file system that fills up at the first checkpoint (needs root to mount it)."""
    disk = tmp_path / "disk"
    if not _mount_tiny_tmpfs(disk):
        pytest.skip("mounting a small tmpfs needs root")
    try:
        env = {k: v for k, v in os.environ.items() if k != "JAXSEG_DEBUG"}
        done = subprocess.run(
            [sys.executable, tinyrun.__file__, "--workdir", str(disk / "w"), "--steps", "10"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        lines = _message_lines(done.stderr)
        assert done.returncode == 1, done.stderr[-3000:]
        assert "Traceback" not in done.stderr and len(lines) <= 2, done.stderr[-3000:]
        assert "the disk is full" in done.stderr
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_checkpoint_folder_without_permission_exits_2(tmp_path, capsys, monkeypatch, tinyrun):
    monkeypatch.delenv("JAXSEG_DEBUG", raising=False)
    path = f"{tmp_path}/checkpoints/2.orbax-checkpoint-tmp/state"

    def save(self, step, *args, **kwargs):  # what tensorstore says on a read-only folder
        raise ValueError(f'PERMISSION_DENIED: Error writing local file "{path}": Permission denied')

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    code, err = _run_main(tinyrun, tmp_path, tinyrun.tiny_config(num_train_steps=4), capsys)
    assert code == 2
    assert "writing checkpoint 2" in err and "permission denied" in err
    assert "Traceback" not in err and len(_message_lines(err)) <= 2, err
