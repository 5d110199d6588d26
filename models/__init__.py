"""mtlrank: models — the spec, features, Keras layers and architectures, losses, run_fn."""

import contract  # noqa: F401  (chooses Keras before TensorFlow is touched)
