"""ClarityNetSR: joint deblurring and super-resolution of real-world video in JAX."""

import os

# Before anything imports TensorFlow (tf.data, clu's summary writer): its C++
# warnings (an input error logged by every worker, each with its Python traceback)
# would bury a command's one-line error. TF_CPP_MIN_LOG_LEVEL=0 brings them back.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
