"""The Evaluator: the candidate and the blessed model in one TFMA pass, and the
single-task baseline against the candidate by a paired bootstrap.

TFX's Evaluator takes at most two models (candidate and baseline), so the
single-task baseline needed a second Evaluator: a second read of the eval
split, a second inference setup and a second Beam pipeline. This component adds
an optional `single_task_model` input. TFMA evaluates the candidate and the
blessed baseline (`pipeline.eval_config.multi_model_eval_config`): the release
gate is the candidate's value floors and its change against the latest blessed
model. The single-task model never gates, and TFMA does not evaluate it: the
executor predicts both the candidate and the single-task model on the eval
rows (at most `evaluation.comparison_max_rows`) and writes MTL - STL per task,
slice and metric with a paired bootstrap interval (`pipeline.model_comparison`);
the single-task value the summary and report show is TFMA's candidate value
minus that difference (`pipeline.results.compare_with_single_task`).
Outputs, blessing file and properties are those of TFX's Evaluator, so the
Pusher and the latest-blessed-model resolver read them unchanged.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List

import apache_beam as beam
import tensorflow_model_analysis as tfma
from absl import logging
from tfx import types
from tfx.components.evaluator import constants
from tfx.components.util import tfxio_utils
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, path_utils

from contract import (
  EVAL_SIGNATURE,
  EVAL_SPLIT,
  EVALUATOR_NODE,
  SERVING_SIGNATURE,
)
from models.export import has_eval_signature
from models.spec import RankingSpec, spec_from_json

SINGLE_TASK_MODEL_KEY = "single_task_model"
SPEC_KEY = "spec"
_SPECS = standard_component_specs


class RankingEvaluatorSpec(types.ComponentSpec):
  """TFX's EvaluatorSpec with the single-task model and the spec (JSON)."""

  PARAMETERS = {
    _SPECS.EXAMPLE_SPLITS_KEY: ExecutionParameter(type=str, optional=True),
    SPEC_KEY: ExecutionParameter(type=str),
  }
  INPUTS = {
    _SPECS.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
    _SPECS.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
    _SPECS.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    SINGLE_TASK_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
  }
  OUTPUTS = {
    _SPECS.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
    _SPECS.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
  }


def _single(input_dict: Dict[str, List[types.Artifact]], key: str) -> types.Artifact | None:
  artifacts = input_dict.get(key) or []
  if len(artifacts) > 1:
    raise ValueError(f"the Evaluator takes one {key}, got {len(artifacts)}")
  return artifacts[0] if artifacts else None


class Executor(base_beam_executor.BaseBeamExecutor):
  """Runs one TFMA pass over every model present, then blesses as TFX's Evaluator does."""

  def Do(
    self,
    input_dict: Dict[str, List[types.Artifact]],
    output_dict: Dict[str, List[types.Artifact]],
    exec_properties: Dict[str, Any],
  ) -> None:
    from pipeline.eval_config import evaluated_feature_columns, multi_model_eval_config

    spec = spec_from_json(exec_properties[SPEC_KEY])
    candidate = _single(input_dict, _SPECS.MODEL_KEY)
    baseline = _single(input_dict, _SPECS.BASELINE_MODEL_KEY)
    single_task = _single(input_dict, SINGLE_TASK_MODEL_KEY)
    eval_config = multi_model_eval_config(spec, baseline is not None)
    # As TFX's Evaluator: without a blessed model the change thresholds are dropped.
    eval_config = tfma.utils.update_eval_config_with_defaults(
      eval_config, has_baseline=baseline is not None, rubber_stamp=True
    )
    tfma.utils.verify_eval_config(eval_config)
    artifact_of = {
      tfma.CANDIDATE_KEY: candidate,
      "": candidate,
      tfma.BASELINE_KEY: baseline,
    }
    models = [
      tfma.default_eval_shared_model(
        eval_saved_model_path=_serving_path(artifact_of[model_spec.name]),
        model_name=model_spec.name,
        eval_config=eval_config,
      )
      for model_spec in eval_config.model_specs
    ]
    output_uri = artifact_utils.get_single_uri(output_dict[_SPECS.EVALUATION_KEY])
    splits = _example_splits(exec_properties)
    keep = evaluated_feature_columns(spec)
    self._evaluate(input_dict[_SPECS.EXAMPLES_KEY], splits, models, eval_config, keep, output_uri)
    # As TFX's Evaluator: no threshold, no validation (a model is never blessed by default).
    if tfma.metrics.metric_thresholds_from_metrics_specs(
      eval_config.metrics_specs, eval_config=eval_config
    ):
      self._bless(output_dict, exec_properties, output_uri, candidate, baseline)
    if single_task is not None:
      _write_comparison(spec, input_dict[_SPECS.EXAMPLES_KEY], splits, candidate, single_task,
                        output_uri)  # fmt: skip

  def _evaluate(self, examples, splits, models, eval_config, keep, output_uri: str) -> None:
    from pipeline.tfma_extracts import trimmed_extractors

    tfxio_factory = tfxio_utils.get_tfxio_factory_from_artifact(
      examples=examples,
      telemetry_descriptors=[EVALUATOR_NODE],
      schema=None,
      raw_record_column_name=tfma.constants.ARROW_INPUT_COLUMN,
    )
    eval_shared_model = models[0] if len(models) == 1 else models
    with self._make_beam_pipeline() as pipeline:
      data = []
      for split in splits:
        for index, uri in enumerate(artifact_utils.get_split_uris(examples, split)):
          tfxio = tfxio_factory(io_utils.all_files_pattern(uri))
          data.append(pipeline | f"Read[{split}][{index}]" >> tfxio.BeamSource())
      _ = (
        data
        | "FlattenExamples" >> beam.Flatten()
        | "ExtractEvaluateAndWriteResults"
        >> tfma.ExtractEvaluateAndWriteResults(
          eval_shared_model=eval_shared_model,
          eval_config=eval_config,
          extractors=trimmed_extractors(eval_shared_model, eval_config, keep),
          output_path=output_uri,
        )
      )
    logging.info("Evaluation of %d model(s) written to %s", len(models), output_uri)

  def _bless(self, output_dict, exec_properties, output_uri, candidate, baseline):
    """The blessing artifact as TFX's Evaluator writes it."""
    blessing = artifact_utils.get_single_instance(output_dict[_SPECS.BLESSING_KEY])
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
                                        candidate.uri)  # fmt: skip
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, candidate.id)
    if baseline is not None:
      blessing.set_string_custom_property(
        constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline.uri
      )
      blessing.set_int_custom_property(
        constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline.id
      )
    if "current_component_id" in exec_properties:
      blessing.set_string_custom_property("component_id", exec_properties["current_component_id"])
    if tfma.load_validation_result(output_uri).validation_ok:
      io_utils.write_string_file(os.path.join(blessing.uri, constants.BLESSED_FILE_NAME), "")
      blessing.set_int_custom_property(
        constants.ARTIFACT_PROPERTY_BLESSED_KEY, constants.BLESSED_VALUE
      )
    else:
      io_utils.write_string_file(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), "")
      blessing.set_int_custom_property(
        constants.ARTIFACT_PROPERTY_BLESSED_KEY, constants.NOT_BLESSED_VALUE
      )


def _serving_path(model: types.Artifact) -> str:
  return path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))


def _example_splits(exec_properties: Dict[str, Any]) -> List[str]:
  from tfx.utils import json_utils

  return json_utils.loads(exec_properties.get(_SPECS.EXAMPLE_SPLITS_KEY) or "null") or [EVAL_SPLIT]


def _write_comparison(spec: RankingSpec, examples, splits, candidate, single_task, output_uri):
  """MTL - STL per task, slice and metric with its paired bootstrap interval,
  on at most `evaluation.comparison_max_rows` rows of the split."""
  from pipeline import model_comparison

  uris = [uri for split in splits for uri in artifact_utils.get_split_uris(examples, split)]
  signature = EVAL_SIGNATURE if has_eval_signature(spec) else SERVING_SIGNATURE
  models = {"multi": _serving_path(candidate), "single": _serving_path(single_task)}
  rows = model_comparison.sample_and_predict(
    spec, uris, models, signature, spec.evaluation.comparison_max_rows
  )
  comparison = model_comparison.compare(
    spec,
    rows.values,
    rows.predictions["multi"],
    rows.predictions["single"],
    seed=spec.training.seed,
  )
  comparison.update(rows=rows.rows, split_rows=rows.split_rows)
  path = model_comparison.write(output_uri, comparison)
  logging.info(
    "MTL - STL intervals of %d of %d rows written to %s", rows.rows, rows.split_rows, path
  )


class RankingEvaluator(base_beam_component.BaseBeamComponent):
  """Evaluator over the candidate, the latest blessed model and the single-task baseline."""

  SPEC_CLASS = RankingEvaluatorSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(
    self,
    examples: types.BaseChannel,
    model: types.BaseChannel,
    spec: RankingSpec,
    baseline_model: types.BaseChannel | None = None,
    single_task_model: types.BaseChannel | None = None,
    example_splits: List[str] | None = None,
  ):
    from tfx.utils import json_utils

    super().__init__(
      spec=RankingEvaluatorSpec(
        examples=examples,
        model=model,
        baseline_model=baseline_model,
        single_task_model=single_task_model,
        example_splits=json_utils.dumps(example_splits),
        spec=spec.to_json(),
        evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing),
      )
    )
