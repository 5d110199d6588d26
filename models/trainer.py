"""TFX Trainer entry point: `run_fn` trains the spec's multi-task model.

The spec arrives in `fn_args.custom_config` (see `pipeline.pipeline`), so the
architecture, heads, losses, balancing and training budget all come from the
one spec file. The input pipeline (`models.inputs`) reads the Transform output
and, when a split's parsed columns fit the memory budget, parses it once and
reshuffles it in memory every epoch.
"""

from __future__ import annotations

import os
import time

import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from tfx import v1 as tfx

from contract import SELECTION_DIRNAME
from models import architectures, distribute, export, inputs, selection, telemetry, warm_start
from models.features import (
  SHARED_VOCABULARY,
  spec_from_custom_config,
  vocab_sizes,
  vocabulary_files,
)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains the spec's model on the Transform output and exports it."""
  spec = spec_from_custom_config(fn_args.custom_config)
  keras.utils.set_random_seed(spec.training.seed)
  tft_output = tft.TFTransformOutput(fn_args.transform_output)
  feature_spec = tft_output.transformed_feature_spec()
  strategy = distribute.strategy_from_environment()
  distribute.set_precision_policy(spec)
  # Batched by the global batch size: the strategy splits batches across replicas.
  train = inputs.make_input(
    fn_args.train_files, feature_spec, spec, spec.training.batch_size, shuffle=True
  )
  evaluation = inputs.make_input(
    fn_args.eval_files, feature_spec, spec, spec.training.eval_batch_size, shuffle=False
  )
  train_steps = max(1, train.num_examples // spec.training.batch_size)
  eval_steps = -(-evaluation.num_examples // spec.training.eval_batch_size)

  sizes, vocabularies = vocab_sizes(spec, tft_output), vocabulary_files(spec, tft_output)
  model_uri = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
  with strategy.scope():
    model = architectures.build_model(spec, sizes)
    architectures.compile_model(model, spec)
  if spec.training.warm_start:
    _warm_start(model, spec, fn_args.base_model, vocabularies, model_uri)
  log_dir = os.path.join(fn_args.model_run_dir, "logs")
  recorder = selection.SelectionRecorder(
    spec, per_task=spec.training.per_task_selection and selection.shares_nothing(model)
  )
  if spec.training.per_task_selection and not recorder.per_task:
    logging.info(
      "training.per_task_selection: %s shares weights between tasks; one epoch is kept "
      "for all and the selection report gives each task's trade-off",
      spec.model.architecture,
    )
  fit_callbacks = telemetry.callbacks(spec, log_dir, recorder=recorder)
  started = time.perf_counter()
  history = model.fit(
    train.dataset.repeat(),
    steps_per_epoch=train_steps,
    validation_data=evaluation.dataset,
    validation_steps=eval_steps,
    epochs=spec.training.epochs,
    callbacks=fit_callbacks,
    verbose=2,
  )
  logging.info("Training took %.1f s", time.perf_counter() - started)
  kept = selection.kept_epoch(fit_callbacks, len(history.epoch))
  path = selection.write_report(recorder.report(kept), os.path.join(model_uri, SELECTION_DIRNAME))
  logging.info("Epoch selection: %s", path)
  export.export_serving_model(model, spec, tft_output, fn_args.serving_model_dir)
  # What a later run warm-starts from (beside the SavedModel, never pushed).
  warm_start.save_bundle(model, spec, sizes, vocabularies, model_uri)


def _warm_start(model, spec, base_model: str | None, vocabularies, model_uri: str) -> None:
  bundle = warm_start.bundle_of(base_model) if base_model else None
  if bundle is None:
    logging.warning(
      "training.warm_start: no blessed model with a warm-start bundle yet (%s); cold start",
      base_model or "no base model",
    )
    return
  report = warm_start.warm_start(model, spec, bundle, vocabularies, SHARED_VOCABULARY)
  path = warm_start.write_report(report, os.path.join(model_uri, warm_start.WARM_START_DIR))
  logging.info(
    "Warm start from %s: %d variables carried, %d fresh; report %s",
    bundle,
    report["variables_carried"],
    len(report["variables_fresh"]),
    path,
  )
