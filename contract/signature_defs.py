"""SignatureDefs on disk: read them, and set their method names.

TF2's `tf.saved_model.save` writes every signature with the Predict method
name; TF Serving's Classify and Regress APIs only accept signatures whose
method name is 'tensorflow/serving/classify' or '.../regress'. The known
workaround is to rewrite the method names in saved_model.pb after saving.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping

from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from contract import SAVED_MODEL_FILENAME, SERVE_TAG


def read_saved_model(export_dir: str | os.PathLike) -> saved_model_pb2.SavedModel:
  saved_model = saved_model_pb2.SavedModel()
  saved_model.ParseFromString((Path(export_dir) / SAVED_MODEL_FILENAME).read_bytes())
  return saved_model


def serving_meta_graph(saved_model: saved_model_pb2.SavedModel) -> meta_graph_pb2.MetaGraphDef:
  for meta_graph in saved_model.meta_graphs:
    if SERVE_TAG in meta_graph.meta_info_def.tags:
      return meta_graph
  raise ValueError(f"the SavedModel has no meta graph tagged {SERVE_TAG!r}")


def read_signature_defs(export_dir: str | os.PathLike) -> Dict[str, meta_graph_pb2.SignatureDef]:
  """The SignatureDefs of the serving meta graph, by signature key."""
  return dict(serving_meta_graph(read_saved_model(export_dir)).signature_def)


def set_signature_method_names(
  export_dir: str | os.PathLike, method_names: Mapping[str, str]
) -> None:
  """Sets the method name of each signature key in `method_names`, e.g.
  {"classification": "tensorflow/serving/classify"}, in every meta graph of
  the SavedModel at `export_dir`. The file is replaced atomically.

  Raises KeyError naming a signature key the serving meta graph lacks.
  """
  saved_model = read_saved_model(export_dir)
  missing = set(method_names) - set(serving_meta_graph(saved_model).signature_def)
  if missing:
    raise KeyError(f"no signature(s) {sorted(missing)} in {export_dir}")
  for meta_graph in saved_model.meta_graphs:
    for key, method_name in method_names.items():
      if key in meta_graph.signature_def:
        meta_graph.signature_def[key].method_name = method_name
  path = Path(export_dir) / SAVED_MODEL_FILENAME
  partial = path.with_name(path.name + ".partial")
  partial.write_bytes(saved_model.SerializeToString())
  os.replace(partial, path)
