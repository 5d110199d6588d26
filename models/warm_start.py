"""Warm start: a run on a new span starts from the latest blessed model.

Each trained Model artifact carries a bundle beside its SavedModel,
`<model uri>/WarmStart/`: the Keras weights (a TF checkpoint), the spec and
vocabulary sizes the model was built with, and a copy of every TFT vocabulary
file its embedded features were looked up in. A later Trainer given that
artifact as `base_model` (`training.warm_start: true`):

  * builds the base model from the bundle and loads its weights;
  * copies every variable whose name and shape match (experts, gates, towers,
    the position tower...);
  * carries embedding rows over **by token**: a vocabulary feature's row for a
    token present in both vocabularies is the base model's row for that token,
    new tokens keep their fresh initialisation, dropped tokens are dropped;
    OOV rows, hashed ids and bucket ids (whose meaning does not depend on the
    span's vocabulary) are copied by position.

`warm_start` returns a report (what was carried, what started fresh) that the
Trainer writes beside the model and the run summary shows.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping

import numpy as np
import tensorflow as tf

from contract import WARM_START_DIRNAME, WARM_START_REPORT_FILENAME
from models import layers
from models.spec import FeatureSpec, RankingSpec, spec_from_json

WARM_START_DIR = WARM_START_DIRNAME
REPORT_FILE = WARM_START_REPORT_FILENAME
_WEIGHTS = "weights"
_MANIFEST = "manifest.json"
_VOCABULARIES = "vocabularies"


def vocabulary_name(feature: FeatureSpec, shared_vocabulary: str | None) -> str | None:
  """The TFT vocabulary a feature's ids index, or None when its ids do not
  depend on a vocabulary (hashed, bucketized)."""
  if feature.kind != "categorical" or feature.encoding != "vocabulary":
    return None
  return shared_vocabulary if (shared_vocabulary and feature.top_k is None) else feature.name


def _tokens(path: str) -> List[bytes]:
  with tf.io.gfile.GFile(path, "rb") as f:
    return [line.rstrip(b"\n") for line in f]


def save_bundle(
  model: Any,
  spec: RankingSpec,
  vocab_sizes: Mapping[str, int],
  vocabulary_files: Mapping[str, str],
  model_uri: str,
) -> str:
  """Writes the warm-start bundle of a trained model under `model_uri`.
  `vocabulary_files`: {TFT vocabulary name: its file}."""
  directory = os.path.join(model_uri, WARM_START_DIR)
  tf.io.gfile.makedirs(os.path.join(directory, _VOCABULARIES))
  model.save_weights(os.path.join(directory, _WEIGHTS))
  for name, path in vocabulary_files.items():
    tf.io.gfile.copy(path, os.path.join(directory, _VOCABULARIES, name), overwrite=True)
  manifest = {
    "spec": spec.to_json(),
    "vocab_sizes": {k: int(v) for k, v in vocab_sizes.items()},
    "vocabularies": sorted(vocabulary_files),
  }
  with tf.io.gfile.GFile(os.path.join(directory, _MANIFEST), "w") as f:
    f.write(json.dumps(manifest, indent=2, sort_keys=True))
  return directory


def bundle_of(base_model_dir: str) -> str | None:
  """The bundle beside a Model artifact's SavedModel (`<uri>/Format-Serving`),
  if that model was trained by this project."""
  directory = os.path.join(os.path.dirname(base_model_dir.rstrip("/")), WARM_START_DIR)
  return directory if tf.io.gfile.exists(os.path.join(directory, _MANIFEST)) else None


def _row_mapping(old: List[bytes], new: List[bytes], old_rows: int, new_rows: int) -> np.ndarray:
  """For each new row, the old row it takes (-1: stays fresh). Rows past the
  vocabulary (OOV buckets) map by their position after it."""
  index = {token: i for i, token in enumerate(old)}
  mapping = np.full(new_rows, -1, np.int64)
  for i, token in enumerate(new[:new_rows]):
    mapping[i] = index.get(token, -1)
  for k in range(min(new_rows - len(new), old_rows - len(old))):
    mapping[len(new) + k] = len(old) + k
  return mapping


def warm_start(
  model: Any,
  spec: RankingSpec,
  bundle_dir: str,
  vocabulary_files: Mapping[str, str],
  shared_vocabulary: str | None = None,
) -> Dict[str, Any]:
  """Loads what fits of the bundle's model into `model` (see the module
  docstring); returns the report."""
  from models.multitask import build_model

  with tf.io.gfile.GFile(os.path.join(bundle_dir, _MANIFEST)) as f:
    manifest = json.load(f)
  base_spec = spec_from_json(manifest["spec"])
  base = build_model(base_spec, manifest["vocab_sizes"])
  base.load_weights(os.path.join(bundle_dir, _WEIGHTS)).expect_partial()

  def embeddings(m: Any) -> Dict[str, layers.FeatureEmbedding]:
    return {
      layer.name: layer
      for layer in m._flatten_layers(include_self=False)
      if isinstance(layer, layers.FeatureEmbedding)
    }

  base_embeddings = embeddings(base)
  features = {f.name: f for f in spec.features}
  table_ids = set()
  report_embeddings: Dict[str, Dict[str, int]] = {}
  old_tokens_cache: Dict[str, List[bytes]] = {}
  for layer_name, layer in embeddings(model).items():
    base_layer = base_embeddings.get(layer_name)
    for name, (table, offset, size) in layer.feature_rows().items():
      table_ids.add(id(table))
      base_rows = base_layer.feature_rows().get(name) if base_layer is not None else None
      if base_rows is None or int(base_rows[0].shape[-1]) != int(table.shape[-1]):
        report_embeddings[name] = {"carried": 0, "new": size, "dropped": 0}
        continue
      base_table, base_offset, base_size = base_rows
      vocabulary = vocabulary_name(features[name], shared_vocabulary)
      if vocabulary is not None and vocabulary in manifest["vocabularies"]:
        if vocabulary not in old_tokens_cache:
          old_tokens_cache[vocabulary] = _tokens(
            os.path.join(bundle_dir, _VOCABULARIES, vocabulary)
          )
        old = old_tokens_cache[vocabulary]
        new = _tokens(vocabulary_files[vocabulary])
        mapping = _row_mapping(old, new, base_size, size)
        dropped = len(set(old) - set(new[:size]))
      else:  # ids that mean the same in every span: hashed, bucketized
        mapping = np.where(np.arange(size) < base_size, np.arange(size), -1)
        dropped = max(0, base_size - size)
      rows = table.numpy()
      carried = mapping >= 0
      rows[offset + np.flatnonzero(carried)] = base_table.numpy()[base_offset + mapping[carried]]
      table.assign(rows)
      report_embeddings[name] = {
        "carried": int(carried.sum()),
        "new": int((~carried).sum()),
        "dropped": int(dropped),
      }

  base_variables = {v.name: v for v in base.variables}
  carried_variables, fresh_variables = 0, []
  for variable in model.variables:
    if id(variable) in table_ids:
      continue
    source = base_variables.get(variable.name)
    if source is not None and source.shape == variable.shape:
      variable.assign(source)
      carried_variables += 1
    elif variable.trainable:
      fresh_variables.append(variable.name)
  return {
    "base": bundle_dir,
    "base_architecture": base_spec.model.architecture,
    "variables_carried": carried_variables,
    "variables_fresh": fresh_variables,
    "embeddings": report_embeddings,
  }


def write_report(report: Mapping[str, Any], directory: str) -> str:
  tf.io.gfile.makedirs(directory)
  path = os.path.join(directory, REPORT_FILE)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(json.dumps(report, indent=2, sort_keys=True))
  return path
