"""The synthetic spec's click model with and without the position logit,
trained outside TFX as the Trainer would (the spec's architecture, 3 epochs,
batch 512, all spans' train rows; features mapped as in esmm_experiment), against
the position alone: is the click model learning anything beyond the position?

    uv run python -m benchmarks.synthetic_click_check
"""
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks import esmm_experiment as experiment  # noqa: E402
from models import architectures  # noqa: E402
from models.spec import load_spec  # noqa: E402
from pipeline.data import simulator  # noqa: E402


def main() -> int:
  spec = load_spec("synthetic")
  with tempfile.TemporaryDirectory() as data_dir:
    simulator.simulate(spec, data_dir, progress=False)
    train = experiment.read_split(spec, Path(data_dir), "train")
    test = experiment.read_split(spec, Path(data_dir), "eval")
  mapping = experiment.FeatureMapping.fit(spec, train)
  train_features, test_features = mapping.transform(train), mapping.transform(test)
  print(f"position alone: click AUC {roc_auc_score(test['click'], -test['position']):.4f}")
  keras.utils.set_random_seed(0)
  model = architectures.build_model(spec, mapping.vocab_sizes())
  architectures.compile_model(model, spec)
  model.fit(experiment.dataset(train_features, experiment.labels_of(spec, train),
                               spec.training.batch_size, True, 0),
            epochs=spec.training.epochs, verbose=0)
  logits, _ = model.forward({k: tf.constant(v) for k, v in test_features.items()},
                            training=False, use_position=True)
  with_position = tf.sigmoid(logits["click"]).numpy().reshape(-1)
  free = model.predict(test_features, batch_size=8192, verbose=0)["click"].reshape(-1)
  print(f"model: click AUC with the position logit {roc_auc_score(test['click'], with_position):.4f}, "
        f"position-free {roc_auc_score(test['click'], free):.4f}; learned position logits "
        f"{np.round(model.position_tower.bias_by_position.numpy()[1:], 2).tolist()}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
