"""The TFX pipeline, built from a spec.

ExampleGen ingests one span (a day) of impression logs in three splits,
train, validation and eval; StatisticsGen, ExampleValidator (against the
schema derived from the spec) and DataGate check it and stop the run on bad
data; Transform analyzes the train split of the latest `data.num_spans` spans
and transforms all three; Trainer fits on train and selects on validation
(early stopping, the best epoch restored); Evaluator judges the candidate on
the newest span's eval split, which nothing before it reads, against the
value thresholds and the latest blessed model; Pusher writes a blessed, not
yet pushed model as a new TF Serving version.

Each component gets only the part of the spec it reads (`RankingSpec.
transform_view`, `trainer_view`), so that a change to the evaluation section
re-runs the Evaluator only, and a change to the training budget keeps the
Transform's cache. DataGate gets the whole spec: the run's record of it.

With `evaluation.single_task_baseline`, a second Trainer trains the
`single_task` architecture on the same Transform output with the same budget,
and the Evaluator evaluates it in the same TFMA pass as the candidate and the
blessed model (pipeline/evaluator.py: no gates on it) and writes MTL - STL
with paired bootstrap intervals; it is reported, never pushed.
"""

from __future__ import annotations

from typing import List

from tfx import v1 as tfx
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2, transform_pb2

from components import example_gen as example_gen_lib
from components import pusher as pusher_lib
from components import span_window
from components.data_gate import DataGate
from contract import (
  DATA_GATE_NODE,
  EVAL_SPLIT,
  EVALUATOR_NODE,
  EXAMPLE_GEN_NODE,
  EXAMPLE_VALIDATOR_NODE,
  PUSHER_NODE,
  SINGLE_TASK_TRAINER_NODE,
  SPAN_DIR_PATTERN,
  STATISTICS_GEN_NODE,
  TRAIN_SPLIT,
  TRAINER_NODE,
  TRANSFORM_NODE,
  VALIDATION_SPLIT,
)
from models.features import SPEC_CONFIG_KEY
from models.spec import RankingSpec
from pipeline import config
from pipeline.data import files as files_source
from pipeline.evaluator import RankingEvaluator

PREPROCESSING_FN = "models.features.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"
SINGLE_TASK_ARCHITECTURE = "single_task"


def example_gen_input_config() -> example_gen_pb2.Input:
  span = SPAN_DIR_PATTERN
  return example_gen_pb2.Input(
    splits=[
      example_gen_pb2.Input.Split(name=split, pattern=f"{span}/{split}/*")
      for split in (TRAIN_SPLIT, VALIDATION_SPLIT, EVAL_SPLIT)
    ]
  )


def create_pipeline(
  spec: RankingSpec,
  paths: config.PipelinePaths,
  span: int | None = None,
  beam_pipeline_args: List[str] | None = None,
  enable_cache: bool = True,
  ingest_only: bool = False,
  run_span_window: bool = False,
) -> tfx.dsl.Pipeline:
  """The pipeline for one spec; `span` ingests that span (default: the latest).

  With `ingest_only`, only ingestion and validation run: the runner uses it to
  backfill the earlier spans of the training window, which then count as the
  same pipeline's ExampleGen outputs.

  With `run_span_window`, Transform reads this run's ExampleGen output (one
  span) instead of the latest-spans resolver: Kubeflow's compiler supports
  neither custom resolver strategies nor multi-artifact resolvers
  (pipeline/schedule/kubeflow.py).
  """
  range_config = (
    range_config_pb2.RangeConfig(
      static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
    )
    if span is not None
    else None
  )
  if spec.data.source == "files":
    # The user's files, through TFX's ExampleGen for their format (pipeline.data.files).
    example_gen = files_source.example_gen(spec, range_config=range_config)
  else:
    example_gen = FileBasedExampleGen(
      input_base=str(paths.data_dir),
      input_config=example_gen_input_config(),
      range_config=range_config,
      custom_executor_spec=executor_spec.BeamExecutorSpec(example_gen_lib.Executor),
    )
  example_gen = example_gen.with_id(EXAMPLE_GEN_NODE)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"]).with_id(
    STATISTICS_GEN_NODE
  )
  inferred_schema = tfx.components.SchemaGen(
    statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
  ).with_id("inferred_schema_gen")
  curated_schema = tfx.components.ImportSchemaGen(schema_file=str(paths.curated_schema_path))
  example_validator = tfx.components.ExampleValidator(
    statistics=statistics_gen.outputs["statistics"], schema=curated_schema.outputs["schema"]
  ).with_id(EXAMPLE_VALIDATOR_NODE)
  data_gate = DataGate(
    examples=example_gen.outputs["examples"],
    statistics=statistics_gen.outputs["statistics"],
    anomalies=example_validator.outputs["anomalies"],
    spec=spec,
  ).with_id(DATA_GATE_NODE)
  ingestion = [
    example_gen,
    statistics_gen,
    inferred_schema,
    curated_schema,
    example_validator,
    data_gate,
  ]
  pipeline_args = dict(
    pipeline_name=pipeline_name(spec),
    pipeline_root=str(paths.pipeline_root),
    enable_cache=enable_cache,
    metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
      str(paths.metadata_path)
    ),
    # The in-memory defaults then the spec's `beam.args`, unless the caller
    # (the runner: --beam portable, --beam-arg) gives the whole list.
    beam_pipeline_args=config.with_local_workers(
      beam_pipeline_args
      if beam_pipeline_args is not None
      else [*config.BEAM_PIPELINE_ARGS, *spec.beam.args]
    ),
  )
  if ingest_only:
    return tfx.dsl.Pipeline(components=ingestion, **pipeline_args)

  if run_span_window:
    window_nodes, window_examples = [], example_gen.outputs["examples"]
  else:
    latest_spans = _latest_spans_resolver(spec, example_gen, data_gate)
    window_nodes, window_examples = [latest_spans], latest_spans.outputs["examples"]
  transform = tfx.components.Transform(
    examples=window_examples,
    schema=curated_schema.outputs["schema"],
    preprocessing_fn=PREPROCESSING_FN,
    custom_config={SPEC_CONFIG_KEY: spec.transform_view().to_json()},
    # StatisticsGen already profiles the raw span; Transform's own pre- and
    # post-transform statistics would be two more full TFDV passes.
    disable_statistics=True,
    # TF1 graph mode traces the preprocessing_fn once per phase instead of
    # as tf.functions: the census Transform ran ~2x faster (docs/pipeline.md).
    force_tf_compat_v1=True,
    # The analyzers (vocabularies, means, quantiles) see train only; every
    # split is transformed with them.
    splits_config=transform_splits_config(),
  ).with_id(TRANSFORM_NODE)
  transform.add_upstream_node(data_gate)

  baseline = tfx.dsl.Resolver(
    strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
    model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
    model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id("latest_blessed_model_resolver")
  trainer = _trainer(
    spec.trainer_view(),
    transform,
    curated_schema,
    # Warm start from the model the Evaluator compares against.
    base_model=baseline.outputs["model"] if spec.training.warm_start else None,
  ).with_id(TRAINER_NODE)
  single_task_trainer = (
    _trainer(spec.trainer_view(SINGLE_TASK_ARCHITECTURE), transform, curated_schema).with_id(
      SINGLE_TASK_TRAINER_NODE
    )
    if spec.evaluation.single_task_baseline
    else None
  )
  evaluator = RankingEvaluator(
    examples=example_gen.outputs["examples"],
    model=trainer.outputs["model"],
    spec=spec,
    baseline_model=baseline.outputs["model"],
    single_task_model=single_task_trainer.outputs["model"] if single_task_trainer else None,
    example_splits=[EVAL_SPLIT],
  ).with_id(EVALUATOR_NODE)

  pusher = tfx.components.Pusher(
    model=trainer.outputs["model"],
    model_blessing=evaluator.outputs["blessing"],
    push_destination=tfx.proto.PushDestination(
      filesystem=tfx.proto.PushDestination.Filesystem(
        base_directory=str(paths.model_base_path(spec.name))
      )
    ),
    custom_executor_spec=executor_spec.ExecutorClassSpec(pusher_lib.Executor),
  ).with_id(PUSHER_NODE)

  trainers = [trainer] + ([single_task_trainer] if single_task_trainer else [])
  components = ingestion + window_nodes + [transform, *trainers, baseline, evaluator, pusher]
  return tfx.dsl.Pipeline(components=components, **pipeline_args)


def transform_splits_config() -> transform_pb2.SplitsConfig:
  """Transform analyzes train and transforms train, validation and eval."""
  return transform_pb2.SplitsConfig(
    analyze=[TRAIN_SPLIT], transform=[TRAIN_SPLIT, VALIDATION_SPLIT, EVAL_SPLIT]
  )


def _trainer(
  trainer_spec: RankingSpec, transform, schema_gen, base_model=None
) -> tfx.components.Trainer:
  # fn_args.eval_files is validation: early stopping and the best-epoch
  # restore never see the eval split TFMA reports on.
  return tfx.components.Trainer(
    run_fn=RUN_FN,
    examples=transform.outputs["transformed_examples"],
    transform_graph=transform.outputs["transform_graph"],
    schema=schema_gen.outputs["schema"],
    base_model=base_model,
    train_args=tfx.proto.TrainArgs(splits=[TRAIN_SPLIT]),
    eval_args=tfx.proto.EvalArgs(splits=[VALIDATION_SPLIT]),
    custom_config={SPEC_CONFIG_KEY: trainer_spec.to_json()},
  )


def pipeline_name(spec: RankingSpec) -> str:
  return f"mtlrank-{spec.name}"


def _latest_spans_resolver(spec: RankingSpec, example_gen, data_gate) -> tfx.dsl.Resolver:
  resolver = tfx.dsl.Resolver(
    # Each span once, in its newest ingestion (components/span_window.py).
    strategy_class=span_window.LatestSpansStrategy,
    config={"num_spans": spec.data.num_spans},
    # A plain Channel reads every run's ExampleGen outputs; the component's own
    # output channel would hold only this run's span, the backfilled ones lost.
    examples=tfx.dsl.Channel(
      type=tfx.types.standard_artifacts.Examples,
      producer_component_id=example_gen.id,
      output_key="examples",
    ),
  ).with_id("latest_spans_resolver")
  resolver.add_upstream_node(data_gate)
  return resolver
