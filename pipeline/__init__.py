"""mtlrank: the TFX pipeline, its runners, data sources, results and the `mtlrank` command."""

import contract  # noqa: F401  (chooses Keras before TensorFlow is touched)
