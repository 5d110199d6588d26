"""mtlrank: custom TFX components (DataGate, the ExampleGen and Pusher executors)."""

import contract  # noqa: F401  (chooses Keras before TensorFlow is touched)
