"""A minimal TensorBoard event writer (scalars and images) on the `tensorboard` package's protos.

TensorFlow only feeds data in this project (DESIGN 11), so logging does not go through
`tf.summary`: it writes the same event records (TFRecord framing, `Event` protos) directly,
which TensorBoard reads like any other run.
"""

from __future__ import annotations

import io
import os
import socket
import time

import numpy as np
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter


class SummaryWriter:
    """Appends scalar and image summaries to `<logdir>/events.out.tfevents.<time>.<host>`."""

    def __init__(self, logdir: str | os.PathLike):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}"
        self.path = os.path.join(logdir, name)
        self._writer = RecordWriter(open(self.path, "wb"))  # closed in close()
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: event_pb2.Event) -> None:
        self._writer.write(event.SerializeToString())

    def _summary(self, step: int, values: list[summary_pb2.Summary.Value]) -> None:
        summary = summary_pb2.Summary(value=values)
        self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def scalars(self, step: int, scalars: dict[str, float]) -> None:
        """One event with every `tag: value` pair at `step`."""
        values = [
            summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in scalars.items()
        ]
        self._summary(step, values)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """A uint8 `[H, W, 3]` image, PNG-encoded."""
        image = np.asarray(image, dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded = summary_pb2.Summary.Image(
            height=image.shape[0],
            width=image.shape[1],
            colorspace=image.shape[2] if image.ndim == 3 else 1,
            encoded_image_string=buffer.getvalue(),
        )
        self._summary(step, [summary_pb2.Summary.Value(tag=tag, image=encoded)])

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        if not self._writer.closed:
            self._writer.close()
