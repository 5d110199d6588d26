"""Warm start: a model starts from the latest blessed model's weights, with its
embedding rows carried over by token when the vocabulary changed."""

from __future__ import annotations

import json
import os

import numpy as np

from models import architectures, warm_start


def _vocabulary(directory, name: str, tokens) -> str:
  path = os.path.join(directory, name)
  with open(path, "w") as f:
    f.write("".join(f"{t}\n" for t in tokens))
  return path


def test_warm_start_carries_weights_and_embedding_rows_by_token(tiny, tmp_path):
  spec = tiny.make_spec("mmoe", tasks="two_binary").replace(training={"warm_start": True})
  data = tiny.make_dataset(spec, n=512, batch_size=64)
  # The base model: trained, and its bundle written as the Trainer writes it.
  # cat_a's 6 rows: 5 tokens and one OOV bucket.
  old = tmp_path / "old"
  old.mkdir()
  base_files = {
    "cat_a": _vocabulary(old, "cat_a", ["a0", "a1", "a2", "a3", "a4"]),
    "cat_b": _vocabulary(old, "cat_b", [f"b{i}" for i in range(8)]),
  }
  base = architectures.build_model(spec, tiny.VOCAB_SIZES)
  base.compile_for_spec(spec)
  base.fit(data, epochs=3, verbose=0)
  base_loss = base.evaluate(data, verbose=0, return_dict=True)["loss"]
  bundle = warm_start.save_bundle(base, spec, tiny.VOCAB_SIZES, base_files, str(tmp_path / "m1"))
  assert warm_start.bundle_of(str(tmp_path / "m1" / "Format-Serving")) == bundle

  # The next span's vocabulary of cat_a: a1 and a2 dropped, two new tokens.
  new = tmp_path / "new"
  new.mkdir()
  new_files = {
    "cat_a": _vocabulary(new, "cat_a", ["a3", "a0", "n1", "a4", "n2"]),
    "cat_b": base_files["cat_b"],
  }
  warm = architectures.build_model(spec, tiny.VOCAB_SIZES)
  warm.compile_for_spec(spec)
  report = warm_start.warm_start(warm, spec, bundle, new_files)

  def rows(model, feature):
    table, offset, size = model.embedding.feature_rows()[feature]
    return table.numpy()[offset : offset + size]

  old_a, new_a = rows(base, "cat_a"), rows(warm, "cat_a")
  for new_row, old_row in [(0, 3), (1, 0), (3, 4), (5, 5)]:  # tokens a3, a0, a4; the OOV row
    np.testing.assert_array_equal(new_a[new_row], old_a[old_row])
  assert not any(np.allclose(new_a[2], row) for row in old_a)  # n1 starts fresh
  np.testing.assert_array_equal(rows(warm, "cat_b"), rows(base, "cat_b"))
  assert report["embeddings"]["cat_a"] == {"carried": 4, "new": 2, "dropped": 2}
  assert report["embeddings"]["cat_b"]["carried"] == tiny.VOCAB_SIZES["cat_b"]
  np.testing.assert_array_equal(warm.experts.kernels[0].numpy(), base.experts.kernels[0].numpy())
  assert report["variables_carried"] > 0 and report["variables_fresh"] == []
  json.dumps(report)  # the Trainer writes it as JSON

  # Same vocabulary: the warm model starts where the base model ended, far
  # below a cold one.
  same = architectures.build_model(spec, tiny.VOCAB_SIZES)
  same.compile_for_spec(spec)
  warm_start.warm_start(same, spec, bundle, base_files)
  cold = architectures.build_model(spec, tiny.VOCAB_SIZES)
  cold.compile_for_spec(spec)
  warm_loss = same.evaluate(data, verbose=0, return_dict=True)["loss"]
  cold_loss = cold.evaluate(data, verbose=0, return_dict=True)["loss"]
  assert abs(warm_loss - base_loss) < 1e-4 and warm_loss < cold_loss - 0.02
