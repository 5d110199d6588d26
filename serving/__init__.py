"""mtlrank: a server speaking TF Serving's gRPC and REST APIs, its client and warm-up."""

import contract  # noqa: F401  (chooses Keras before TensorFlow is touched)
