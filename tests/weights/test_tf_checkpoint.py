"""`jaxseg.weights.tf_checkpoint` against checkpoints TensorFlow writes itself.

Every variable read without TensorFlow is compared, byte for byte, with what
`tf.train.load_checkpoint(...).get_tensor` returns for the same file; the broken files are
checked to be refused by TensorFlow too where it has an opinion.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import google_crc32c
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxseg.weights.tf_checkpoint import (  # noqa: E402
    CheckpointFileMissingError,
    CheckpointFormatError,
    TFCheckpoint,
    read_tf_checkpoint,
)

# Variable names of the official DeepLab xception_65 release (TF-slim scopes).
DEEPLAB_NAMES = (
    "xception_65/entry_flow/conv1_1/weights",
    "xception_65/entry_flow/conv1_1/BatchNorm/gamma",
    "xception_65/entry_flow/conv1_1/BatchNorm/moving_mean",
    "xception_65/middle_flow/block1/unit_1/xception_module/separable_conv1_depthwise/"
    "depthwise_weights",
)


def assert_same_as_tensorflow(prefix: str) -> dict[str, np.ndarray]:
    """Reads `prefix` with jaxseg and with TensorFlow; names, shapes, dtypes, bytes agree."""
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    ours = read_tf_checkpoint(prefix)
    assert sorted(ours) == sorted(shapes)
    with TFCheckpoint(prefix) as checkpoint:
        assert checkpoint.names() == sorted(shapes)
        for name, array in ours.items():
            expected = np.asarray(reader.get_tensor(name))
            shape, dtype = checkpoint.shape_and_dtype(name)
            assert array.shape == shape == tuple(shapes[name]), name
            if dtypes[name] == tf.string:
                assert array.dtype == dtype == np.dtype(object), name
                assert [bytes(s) for s in array.ravel()] == list(expected.ravel()), name
            else:
                assert array.dtype == dtype == dtypes[name].as_numpy_dtype, name
                assert array.tobytes() == np.ascontiguousarray(expected).tobytes(), name
    return ours


def test_every_dtype_scalar_empty_and_string_of_a_tf2_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    strings = [b"", b"a", b"\x00\xff binary", "é".encode(), b"x" * 300]  # 300: 2-byte varint
    values = {
        "f16": rng.normal(size=(2, 3)).astype(np.float16),
        "bf16": tf.constant([1.5, -2.25, 3e38], tf.bfloat16),
        "f32": np.array([[0.0, -0.0, np.inf], [-np.inf, np.nan, 1e-45]], np.float32),
        "f64": np.float64(3.5),
        "i8": np.array([-128, 127], np.int8),
        "i16": np.array([-(2**15), 2**15 - 1], np.int16),
        "i32": rng.integers(-(2**31), 2**31, (4, 1, 2), dtype=np.int32),
        "i64": np.array([-(2**63), 2**40, 7], np.int64),
        "u8": np.array([0, 255], np.uint8),
        "c64": np.array([1 + 2j, -3j], np.complex64),
        "flags": np.array([[True, False], [False, True]]),
        "text": tf.constant(strings),
        "word": tf.constant(b"scalar string"),
        "empty": np.zeros((0, 3), np.float32),
        "empty_int": np.zeros((2, 0), np.int64),
        "no_text": tf.constant([], tf.string),
    }
    checkpoint = tf.train.Checkpoint(**{k: tf.Variable(v) for k, v in values.items()})
    prefix = checkpoint.write(str(tmp_path / "ckpt"))
    ours = assert_same_as_tensorflow(prefix)
    key = "{}/.ATTRIBUTES/VARIABLE_VALUE".format
    assert ours[key("f64")] == 3.5 and ours[key("f64")].shape == ()
    assert list(ours[key("text")]) == strings
    assert ours[key("word")][()] == b"scalar string"
    assert ours[key("bf16")].astype(np.float32).tolist()[:2] == [1.5, -2.25]
    assert ours[key("empty")].shape == (0, 3) and ours[key("no_text")].shape == (0,)
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" in ours  # TF2's object graph: a scalar string


def test_sharded_v1_saver_with_deeplab_names_and_partitioned_variables(tmp_path):
    rng = np.random.default_rng(1)
    graph = tf.Graph()
    with graph.as_default():
        with tf.device("/cpu:0"):
            tf.compat.v1.get_variable(
                DEEPLAB_NAMES[0], initializer=rng.random((3, 3, 3, 32), np.float32)
            )
            tf.compat.v1.get_variable(DEEPLAB_NAMES[1], initializer=rng.random(32, np.float32))
            tf.compat.v1.get_variable("global_step", initializer=np.int64(30000))
        with tf.device("/cpu:1"):  # a second device: Saver(sharded=True) writes a second file
            tf.compat.v1.get_variable(DEEPLAB_NAMES[2], initializer=rng.random(32, np.float32))
            tf.compat.v1.get_variable(
                DEEPLAB_NAMES[3], initializer=rng.random((3, 3, 64, 1), np.float32)
            )
            tf.compat.v1.get_variable(
                "logits/semantic/weights",
                shape=(1, 1, 6, 21),
                partitioner=tf.compat.v1.fixed_size_partitioner(3, axis=2),
            )
            tf.compat.v1.get_variable(
                "decoder/decoder_conv0_depthwise/depthwise_weights",
                shape=(7, 4),
                partitioner=tf.compat.v1.fixed_size_partitioner(2, axis=0),
            )
        saver = tf.compat.v1.train.Saver(sharded=True)
        config = tf.compat.v1.ConfigProto(device_count={"CPU": 2})
        with tf.compat.v1.Session(graph=graph, config=config) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(session, str(tmp_path / "model.ckpt"), write_meta_graph=False)
    assert len(list(tmp_path.glob("model.ckpt.data-*-of-00002"))) == 2
    ours = assert_same_as_tensorflow(prefix)
    assert set(DEEPLAB_NAMES) < set(ours) and ours["global_step"] == 30000
    with TFCheckpoint(prefix) as checkpoint:  # the partitioned ones were stored in slices
        assert len(checkpoint.entry("logits/semantic/weights").slices) == 3
        assert {checkpoint.entry(n).shard for n in DEEPLAB_NAMES} == {0, 1}
    assert ours["logits/semantic/weights"].shape == (1, 1, 6, 21)


def test_slices_with_whole_dimensions_and_long_offsets(tmp_path):
    # "-" saves a dimension whole (length -1 in the slice key); 66000 takes a 3-byte key code.
    value = np.arange(70000 * 2, dtype=np.int32).reshape(70000, 2)
    prefix = str(tmp_path / "sliced")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=["table", "table"],
        shape_and_slices=["70000 2 66000,4000:-", "70000 2 0,66000:-"],
        tensors=[value[66000:], value[:66000]],
    )
    np.testing.assert_array_equal(assert_same_as_tensorflow(prefix)["table"], value)

    partial = str(tmp_path / "partial")
    tf.raw_ops.SaveV2(
        prefix=partial, tensor_names=["v"], shape_and_slices=["3 0,1"], tensors=[[1.0]]
    )
    with pytest.raises(CheckpointFormatError, match=r"'v' hold 1 of its 3 values"):
        read_tf_checkpoint(partial)


def test_tf2_sharding_policy_and_a_missing_shard(tmp_path):
    variables = {f"v{i}": tf.Variable(np.full(256, i, np.float32)) for i in range(4)}
    policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=1500)
    options = tf.train.CheckpointOptions(experimental_sharding_callback=policy)
    prefix = tf.train.Checkpoint(**variables).write(str(tmp_path / "ckpt"), options=options)
    shards = sorted(tmp_path.glob("ckpt.data-*"))
    assert len(shards) > 1
    ours = assert_same_as_tensorflow(prefix)
    assert ours["v3/.ATTRIBUTES/VARIABLE_VALUE"].tolist() == [3.0] * 256

    shards[-1].unlink()
    with pytest.raises(CheckpointFileMissingError, match=shards[-1].name) as error:
        read_tf_checkpoint(prefix)
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, ValueError)


def saved(tmp_path: Path, value: np.ndarray, name: str = "a/weights") -> tuple[str, Path]:
    prefix = str(tmp_path / "m.ckpt")
    tf.raw_ops.SaveV2(
        prefix=prefix, tensor_names=[name], shape_and_slices=[""], tensors=[tf.constant(value)]
    )
    return prefix, tmp_path / "m.ckpt.data-00000-of-00001"


def test_flipped_data_byte_is_caught_naming_the_variable(tmp_path):
    value = np.random.default_rng(2).normal(size=(64, 64)).astype(np.float32)
    prefix, data = saved(tmp_path, value)
    content = bytearray(data.read_bytes())
    at = bytes(content).find(value.tobytes())  # where the variable's bytes lie
    assert at >= 0
    content[at + 1234] ^= 0x10
    data.write_bytes(bytes(content))
    with pytest.raises(tf.errors.OpError, match="Checksum does not match"):  # TF agrees
        tf.train.load_checkpoint(prefix).get_tensor("a/weights")
    with pytest.raises(CheckpointFormatError, match=r"m\.ckpt: .*'a/weights'.*CRC32C"):
        read_tf_checkpoint(prefix)


def test_flipped_string_byte_is_caught(tmp_path):
    prefix, data = saved(tmp_path, tf.constant([b"hello", b"world"]), "names")
    content = data.read_bytes()
    data.write_bytes(content.replace(b"world", b"wOrld"))
    with pytest.raises(CheckpointFormatError, match=r"'names'.*CRC32C"):
        read_tf_checkpoint(prefix)


def test_truncated_data_file_is_refused_naming_the_variable(tmp_path):
    prefix, data = saved(tmp_path, np.ones((64, 64), np.float32))
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(CheckpointFormatError, match=r"'a/weights' needs .* truncated"):
        read_tf_checkpoint(prefix)


def test_truncated_or_corrupt_index_is_refused(tmp_path):
    prefix, _ = saved(tmp_path, np.ones(3, np.float32))
    index = tmp_path / "m.ckpt.index"
    content = index.read_bytes()
    index.write_bytes(content[: len(content) // 2])
    with pytest.raises(CheckpointFormatError, match=r"m\.ckpt\.index does not end in the table"):
        read_tf_checkpoint(prefix)
    index.write_bytes(content[:20])
    with pytest.raises(CheckpointFormatError, match="shorter than a table footer"):
        read_tf_checkpoint(prefix)
    flipped = bytearray(content)
    flipped[3] ^= 0x01  # inside the first data block (the header entry)
    index.write_bytes(bytes(flipped))
    with pytest.raises(tf.errors.OpError, match="checksum mismatch"):  # TF refuses it as well
        tf.train.load_checkpoint(prefix)
    with pytest.raises(CheckpointFormatError, match="data block whose CRC32C does not match"):
        read_tf_checkpoint(prefix)


def test_foreign_or_missing_files_are_refused(tmp_path):
    foreign = tmp_path / "notes.ckpt.index"
    foreign.write_text("{" + '"model": "deeplab", ' * 10 + "}")  # a JSON file renamed
    with pytest.raises(CheckpointFormatError, match=r"notes\.ckpt: not a readable TF checkpoint"):
        read_tf_checkpoint(tmp_path / "notes.ckpt")
    with pytest.raises(CheckpointFileMissingError, match=r"nothere\.index does not exist"):
        read_tf_checkpoint(tmp_path / "nothere")


def test_unsupported_dtype_is_refused_naming_it(tmp_path):
    prefix, _ = saved(tmp_path, tf.constant([1, 2], tf.qint8), "quantized")
    with TFCheckpoint(prefix) as checkpoint:
        with pytest.raises(CheckpointFormatError, match="'quantized' has dtype DT_QINT8"):
            checkpoint.tensor("quantized")
        with pytest.raises(KeyError, match="'absent' is not a variable"):
            checkpoint.tensor("absent")


def test_tf_slim_reads_a_checkpoint_without_tensorflow(tmp_path, monkeypatch):
    prefix, _ = saved(tmp_path, np.arange(6, dtype=np.float32).reshape(2, 3))
    from jaxseg.weights import tf_checkpoint, tf_slim

    for module in (tf_slim, tf_checkpoint):  # nothing of TensorFlow among their globals
        names = {
            getattr(v, "__module__", None) or getattr(v, "__name__", "")
            for v in vars(module).values()
        }
        assert not any(str(n).startswith("tensorflow") for n in names), module
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # any `import tensorflow` now fails
    arrays = tf_slim.read_checkpoint(tmp_path)
    assert arrays["a/weights"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


# A hand-built index: the table layout as TensorFlow's table_builder writes it (one data block,
# every key written whole), for headers TensorFlow cannot be made to write on this machine.
def varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def masked_crc(data: bytes) -> int:  # tensorflow/core/lib/hash/crc32c.h: Mask
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def table(entries: list[tuple[bytes, bytes]], compression: int = 0) -> bytes:
    out = bytearray()

    def block(items: list[tuple[bytes, bytes]]) -> bytes:
        body = b"".join(varint(0) + varint(len(k)) + varint(len(v)) + k + v for k, v in items)
        contents = body + struct.pack("<II", 0, 1)  # one restart point, at 0
        handle = varint(len(out)) + varint(len(contents))
        trailer = bytes([compression])
        out.extend(contents + trailer + struct.pack("<I", masked_crc(contents + trailer)))
        return handle

    data = block(entries)
    meta = block([])
    index = block([(entries[-1][0], data)])
    return bytes(out) + (meta + index).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)


@pytest.mark.parametrize("endianness, compression", [(0, 0), (1, 0), (0, 1)])
def test_hand_built_index_big_endian_and_snappy_are_refused(tmp_path, endianness, compression):
    values = np.array([1.0, 2.0], "<f4").tobytes()
    (tmp_path / "h.ckpt.data-00000-of-00001").write_bytes(values)
    # BundleHeaderProto{num_shards: 1, endianness, version{producer: 1}}
    header = b"\x08\x01" + (b"\x10\x01" if endianness else b"") + b"\x1a\x02\x08\x01"
    # BundleEntryProto{dtype: DT_FLOAT, shape{dim{size: 2}}, size: 8, crc32c: masked}
    entry = b"\x08\x01\x12\x04\x12\x02\x08\x02\x28\x08\x35" + struct.pack("<I", masked_crc(values))
    index = table([(b"", header), (b"w", entry)], compression)
    (tmp_path / "h.ckpt.index").write_bytes(index)
    prefix = str(tmp_path / "h.ckpt")
    if endianness == compression == 0:  # the hand-built file is one TensorFlow reads
        assert tf.train.load_checkpoint(prefix).get_tensor("w").tolist() == [1.0, 2.0]
        assert read_tf_checkpoint(prefix)["w"].tolist() == [1.0, 2.0]
        return
    match = "big-endian" if endianness else "Snappy-compressed"
    with pytest.raises(CheckpointFormatError, match=match):
        read_tf_checkpoint(prefix)
