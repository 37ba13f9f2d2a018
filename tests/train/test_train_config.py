"""Config checks: unknown override keys, batch vs devices, clear exits instead of tracebacks."""

import sys

import jax
import ml_collections
import pytest
from absl import flags

from jaxseg import train


def _define(monkeypatch, argv):
    monkeypatch.setattr(sys, "argv", ["experiment.py", *argv])
    flag_values = flags.FlagValues()
    holder = train.define_config_flag(train.default_config(), flag_values=flag_values)
    flag_values(sys.argv)
    return holder.value


def test_override_of_a_known_key(monkeypatch):
    config = _define(monkeypatch, ["--config.optimizer.learning_rate=0.5", "--config.seed=3"])
    assert config.optimizer.learning_rate == 0.5 and config.seed == 3


@pytest.mark.parametrize("flag", ["--config.foo=1", "--config.optimizer.learnig_rate=0.1"])
def test_unknown_override_key_exits_with_the_valid_keys(monkeypatch, capsys, flag):
    with pytest.raises(SystemExit) as info:
        _define(monkeypatch, [flag])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown config key" in err and flag in err
    assert "optimizer.learning_rate" in err and "batch_size" in err


def test_batch_not_divisible_by_devices():
    config = train.default_config()
    config.batch_size = 10
    with pytest.raises(train.ConfigError, match=r"not divisible by the 8 devices.*=8 or 16"):
        train.validate_config(config, num_devices=8)
    train.validate_config(config, num_devices=2)  # fine on 2 devices


def test_train_and_evaluate_rejects_bad_batch_before_compiling(tmp_path):
    def never_traced(*args):
        raise AssertionError("train_step must not be traced")

    config = train.default_config()
    config.batch_size = 12
    state = train.TrainState(
        step=0, apply_fn=None, params={}, tx=None, opt_state=None, batch_stats={}
    )
    with pytest.raises(train.ConfigError, match="not divisible"):
        train.train_and_evaluate(
            config,
            tmp_path / "run",
            state=state,
            train_step=never_traced,
            train_stream_fn=lambda start: iter(()),
        )
    assert not (tmp_path / "run").exists()  # nothing written


def test_other_config_errors():
    config = train.default_config()
    config.optimizer.warmup_steps = config.num_train_steps
    with pytest.raises(train.ConfigError, match="warmup_steps"):
        train.validate_config(config, num_devices=1)
    config = train.default_config()
    config.optimizer.lr_multipliers = (("classifer/.*", 10.0),)
    params = {"classifier": {"kernel": jax.numpy.zeros((1, 1, 2, 2))}}
    with pytest.raises(train.ConfigError, match="matches no parameter"):
        train.validate_config(config, num_devices=1, params=params)
    with pytest.raises(train.ConfigError, match="default_config"):
        train.validate_config(ml_collections.ConfigDict({"batch_size": 8}), num_devices=1)


def test_handle_errors_prints_the_message_and_exits(capsys):
    def main(argv):
        raise train.NonFiniteLossError("loss is not finite at step 6")

    with pytest.raises(SystemExit) as info:
        train.handle_errors(main)(["experiment.py"])
    assert info.value.code == 1
    assert "NonFiniteLossError: loss is not finite at step 6" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        train.handle_errors(lambda: (_ for _ in ()).throw(train.StopRequested("stop", 15)))()
    assert info.value.code == 143
