"""Warm-up requests in TF Serving's format: a TFRecord file of `PredictionLog`s
at `<export_dir>/assets.extra/tf_serving_warmup_requests`. The export writes
it; a server replays it before a version takes traffic."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from contract import ASSETS_EXTRA_DIRNAME, EXAMPLES_INPUT, SERVING_SIGNATURE, WARMUP_FILENAME

# TF Serving reads at most this many warm-up records.
MAX_WARMUP_RECORDS = 1000


def warmup_path(export_dir: str | os.PathLike) -> Path:
  return Path(export_dir) / ASSETS_EXTRA_DIRNAME / WARMUP_FILENAME


def write_warmup_requests(
  export_dir: str | os.PathLike,
  serialized_examples: Sequence[bytes],
  model_name: str,
  signature_name: str = SERVING_SIGNATURE,
) -> Path:
  """Writes one batch-1 Predict request per serialized tf.Example (at most
  TF Serving's 1000) into the SavedModel's warm-up file; returns its path.

  The requests feed the signature's `examples` input, the input of every
  signature the pipeline exports.
  """
  if not serialized_examples:
    raise ValueError("warm-up needs at least one serialized tf.Example")
  path = warmup_path(export_dir)
  path.parent.mkdir(parents=True, exist_ok=True)
  with tf.io.TFRecordWriter(str(path)) as writer:
    for example in serialized_examples[:MAX_WARMUP_RECORDS]:
      writer.write(_predict_log(example, model_name, signature_name).SerializeToString())
  return path


def _predict_log(
  example: bytes, model_name: str, signature_name: str
) -> prediction_log_pb2.PredictionLog:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  request.inputs[EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto([example], dtype=tf.string))
  return prediction_log_pb2.PredictionLog(
    predict_log=prediction_log_pb2.PredictLog(request=request)
  )


def read_warmup_requests(export_dir: str | os.PathLike) -> List[prediction_log_pb2.PredictionLog]:
  """The SavedModel's warm-up records; none when it has no warm-up file.

  Raises ValueError for an unreadable file or more than 1000 records, which
  TF Serving also refuses.
  """
  path = warmup_path(export_dir)
  if not path.exists():
    return []
  logs = []
  try:
    for record in tf.data.TFRecordDataset(str(path)):
      if len(logs) == MAX_WARMUP_RECORDS:
        raise ValueError(f"{path} has more than {MAX_WARMUP_RECORDS} warm-up records")
      log = prediction_log_pb2.PredictionLog()
      log.ParseFromString(record.numpy())
      logs.append(log)
  except (tf.errors.OpError, DecodeError) as error:
    raise ValueError(f"cannot read warm-up file {path}: {error}") from None
  return logs
