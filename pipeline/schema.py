"""The data schema, derived from the spec.

The schema TFDV validates every span against is not inferred and hand-edited:
it is written from the spec (`schema_from_spec`), so it cannot drift from the
features and tasks the model is built from. Every declared column is required
in every row with exactly one value of the declared type; binary labels must
lie in {0, 1}; positions in 1..max_value; ground-truth probabilities in [0, 1], other
ground truths (expected dwell, the true utility) >= 0.
The pipeline still runs SchemaGen, whose inferred schema is kept beside the
curated one for inspection.
"""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import schema_pb2

from models.spec import RankingSpec

_TYPES = {"string": schema_pb2.BYTES, "int": schema_pb2.INT, "float": schema_pb2.FLOAT}


def _is_probability(spec: RankingSpec, truth_of: str | None) -> bool:
  """A ground truth is a probability unless it is a regression task's or the
  fused score's (expected seconds, a product with them)."""
  if truth_of is None:
    return True
  return truth_of in spec.task_names and spec.task(truth_of).is_binary


def schema_from_spec(spec: RankingSpec) -> schema_pb2.Schema:
  schema = schema_pb2.Schema()
  for column, dtype in spec.raw_columns.items():
    feature = schema.feature.add(name=column, type=_TYPES[dtype])
    feature.presence.min_fraction = 1.0
    feature.presence.min_count = 1
    feature.shape.dim.add(size=1)
  by_name = {f.name: f for f in schema.feature}
  for task in spec.tasks:
    if task.is_binary:
      domain = by_name[task.label].int_domain
      domain.min, domain.max, domain.is_categorical = 0, 1, True
    else:
      by_name[task.label].float_domain.min = 0.0
  for feature in spec.features:
    if feature.kind == "position":
      by_name[feature.column].int_domain.min = 1
      by_name[feature.column].int_domain.max = feature.max_value
    elif feature.kind == "ground_truth":
      by_name[feature.column].float_domain.min = 0.0
      if _is_probability(spec, feature.truth_of):
        by_name[feature.column].float_domain.max = 1.0
  return schema


def write_schema(spec: RankingSpec, path: str) -> None:
  """Writes the schema as a text proto (what ImportSchemaGen reads)."""
  from google.protobuf import text_format
  from tensorflow.io import gfile

  gfile.makedirs(path.rsplit("/", 1)[0])
  with gfile.GFile(path, "w") as f:
    f.write(text_format.MessageToString(schema_from_spec(spec)))
