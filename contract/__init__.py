"""The contract: every name that crosses a room, defined once.

This package sits at the bottom of the house. models, pipeline, components and
serving import it; it imports none of them and no TensorFlow, so the report and
the run summary can read these names without loading TensorFlow.

Importing it also chooses Keras for the whole process: tf-keras 2 (what TFX
1.16, TFT and TFMA are built on) instead of Keras 3. TensorFlow reads
`TF_USE_LEGACY_KERAS` lazily, at the first touch of `tf.keras`, so setting it
here, before any product code runs, is enough; `contract.keras` is the module
product code takes `keras` from.
"""

from __future__ import annotations

import os

LEGACY_KERAS_ENV = "TF_USE_LEGACY_KERAS"
os.environ.setdefault(LEGACY_KERAS_ENV, "1")

# --- Model outputs ---------------------------------------------------------
# Each task's output is named after the task (the spec declares them); the
# fused ranking score the spec's `serving.score` declares is this output.
FUSED_SCORE_OUTPUT = "score"
# The `evaluation` signature replaces the position-biased task's output by its
# fit to the logs (position logit added) and also returns the served,
# position-free one under `<task>` + this suffix (ranked against the truth).
SERVED_OUTPUT_SUFFIX = "_served"

# --- Signatures of the exported SavedModel ----------------------------------
SERVE_TAG = "serve"
SERVING_SIGNATURE = "serving_default"  # serialized raw tf.Examples in, per-task outputs out
RAW_SIGNATURE = "raw_features"  # one typed tensor per raw feature
TRANSFORM_SIGNATURE = "transform_features"  # the TFT output, for TFMA and debugging
EVAL_SIGNATURE = "evaluation"  # logged examples, position included (TFMA only)
SLICE_SIGNATURE = "slice_features"  # derived features' slice values (buckets), for TFMA
CLASSIFY_SIGNATURE = "classification"  # TF Serving's Classify API
REGRESS_SIGNATURE = "regression"  # TF Serving's Regress API

# --- Method names TF Serving dispatches on -----------------------------------
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

# --- Signature inputs and outputs --------------------------------------------
EXAMPLES_INPUT = "examples"  # serialized tf.Examples of serving_default and evaluation
CLASSIFY_INPUT = "inputs"  # TF Serving's Classify/Regress input key
CLASSIFY_OUTPUT_CLASSES = "classes"
CLASSIFY_OUTPUT_SCORES = "scores"
REGRESS_OUTPUTS = "outputs"

# --- SavedModel and serving directory layout ---------------------------------
# Pushed models live at <serving dir>/<model name>/<version>/, TF Serving's
# `--model_base_path` layout.
SAVED_MODEL_FILENAME = "saved_model.pb"
VARIABLES_DIRNAME = "variables"
VARIABLES_INDEX_FILENAME = "variables.index"
ASSETS_EXTRA_DIRNAME = "assets.extra"
WARMUP_FILENAME = "tf_serving_warmup_requests"

# Inside a trained Model artifact, beside its SavedModel: what a later run
# warm-starts from (models/warm_start.py) and the report of this model's own
# warm start, which the run summary reads.
WARM_START_DIRNAME = "WarmStart"
WARM_START_REPORT_FILENAME = "warm_start.json"
# The Trainer's epoch-selection report (models/selection.py), beside the model.
SELECTION_DIRNAME = "Selection"
SELECTION_REPORT_FILENAME = "selection.json"

# --- The Evaluator's one TFMA pass (pipeline/evaluator.py) -------------------
# TFMA's model name of the single-task baseline (the candidate and the latest
# blessed model keep TFMA's own, tfma.CANDIDATE_KEY and tfma.BASELINE_KEY).
SINGLE_TASK_MODEL_NAME = "stl"
# MTL - STL with paired bootstrap intervals, in the evaluation artifact.
BASELINE_COMPARISON_FILENAME = "baseline_comparison.json"

# --- Data layout ---------------------------------------------------------------
# Three splits of every span: the Trainer fits on train and selects (early
# stopping, the best checkpoint) on validation; TFMA reports and gates on eval,
# which nothing upstream of the Evaluator reads.
TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"
EVAL_SPLIT = "eval"
SPLITS = (TRAIN_SPLIT, VALIDATION_SPLIT, EVAL_SPLIT)
SPAN_DIR_PATTERN = "span-{SPAN}"

# --- Pipeline node ids (MLMD, the summary and the report read them) ----------
EXAMPLE_GEN_NODE = "ExampleGen"
STATISTICS_GEN_NODE = "StatisticsGen"
SCHEMA_GEN_NODE = "SchemaGen"
EXAMPLE_VALIDATOR_NODE = "ExampleValidator"
DATA_GATE_NODE = "DataGate"
TRANSFORM_NODE = "Transform"
TRAINER_NODE = "Trainer"
EVALUATOR_NODE = "Evaluator"
SINGLE_TASK_TRAINER_NODE = "SingleTaskTrainer"
PUSHER_NODE = "Pusher"
