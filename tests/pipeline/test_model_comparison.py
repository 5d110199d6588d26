"""The MTL - STL comparison's rows: streamed from the split in batches, capped
at `evaluation.comparison_max_rows` by a deterministic draw of whole requests,
both models' predictions kept aligned with the rows they score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from contract import EXAMPLES_INPUT
from models.spec import load_spec
from pipeline import model_comparison

pytestmark = pytest.mark.slow

SPEC = load_spec("synthetic")
ITEMS_PER_REQUEST = 4


class _Scorer(tf.Module):
  """Every task's output is `offset` + the row's `item_price`, so a prediction
  names the row it was made on."""

  def __init__(self, offset: float):
    super().__init__()
    self.offset = offset

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
  def serve(self, examples):
    price = tf.io.parse_example(examples, {"item_price": tf.io.FixedLenFeature([], tf.float32)})
    return {t: price["item_price"] + self.offset for t in SPEC.task_names}


def _example(request: int, item: int) -> bytes:
  row = request * ITEMS_PER_REQUEST + item
  floats = {"item_price": float(row), "dwell_seconds": 1.0}
  ints = {"click": row % 2, "conversion": row % 3 == 0, "position": item, "hour": row % 24}
  strings = {"request_id": f"r{request}", "device": ("ios", "android")[row % 2]}
  feature = {
    k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in floats.items()
  }
  feature.update(
    {k: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)])) for k, v in ints.items()}
  )
  feature.update(
    {
      k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
      for k, v in strings.items()
    }
  )
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def split_and_models(tmp_path_factory):
  root = tmp_path_factory.mktemp("comparison")
  split = root / "Split-eval"
  split.mkdir()
  for part in range(2):  # two files, as a split of several shards
    with tf.io.TFRecordWriter(str(split / f"data-{part}.gz"), options="GZIP") as writer:
      for request in range(part * 500, (part + 1) * 500):
        for item in range(ITEMS_PER_REQUEST):
          writer.write(_example(request, item))
  models = {}
  for name, offset in (("multi", 0.0), ("single", 0.5)):
    module = _Scorer(offset)
    tf.saved_model.save(module, str(root / name), signatures={"serving_default": module.serve})
    models[name] = str(root / name)
  return str(split), models


def _sample(split, models, max_rows) -> model_comparison.ComparedRows:
  return model_comparison.sample_and_predict(SPEC, [split], models, "serving_default", max_rows)


def test_every_row_when_the_split_fits(split_and_models):
  split, models = split_and_models
  rows = _sample(split, models, max_rows=10_000)
  assert rows.split_rows == rows.rows == 4000
  price = rows.predictions["multi"]["click"]
  assert sorted(price.tolist()) == [float(i) for i in range(4000)]
  assert np.allclose(rows.predictions["single"]["conversion"], price + 0.5)
  assert rows.values["click"] == [int(p) % 2 for p in price]


def test_the_cap_keeps_whole_requests_the_same_ones_every_time(split_and_models):
  split, models = split_and_models
  rows = _sample(split, models, max_rows=1000)
  assert rows.split_rows == 4000
  assert 700 <= rows.rows <= 1300  # a draw of requests with probability 1/4
  requests, sizes = np.unique(rows.values["request_id"], return_counts=True)
  assert set(sizes) == {ITEMS_PER_REQUEST}
  # Predictions stay on their rows: the row index is the price, the request its quarter.
  price = rows.predictions["multi"]["click"].astype(int)
  assert [f"r{p // ITEMS_PER_REQUEST}" for p in price] == rows.values["request_id"]
  again = _sample(split, models, max_rows=1000)
  assert again.values["request_id"] == rows.values["request_id"]
  comparison = model_comparison.compare(
    SPEC, rows.values, rows.predictions["multi"], rows.predictions["single"], replicates=50
  )
  overall_mse = next(
    i
    for i in comparison["intervals"]
    if (i["task"], i["slice"], i["metric"]) == ("dwell", "overall", "mean_squared_error")
  )
  assert overall_mse["lower"] <= overall_mse["estimate"] <= overall_mse["upper"]


def test_comparison_max_rows_is_read_from_the_spec(tmp_path):
  text = (Path(__file__).resolve().parents[2] / "specs" / "synthetic.yaml").read_text()
  assert SPEC.evaluation.comparison_max_rows == 200_000
  spec_file = tmp_path / "spec.yaml"
  spec_file.write_text(
    text.replace("evaluation:\n", "evaluation:\n  comparison_max_rows: 5000\n", 1)
  )
  assert load_spec(spec_file).evaluation.comparison_max_rows == 5000
  spec_file.write_text(text.replace("evaluation:\n", "evaluation:\n  comparison_max_rows: 0\n", 1))
  with pytest.raises(Exception, match="comparison_max_rows"):
    load_spec(spec_file)
