"""ClarityNetSR: joint deblurring and super-resolution of real-world video in JAX."""

import os

# Before anything imports TensorFlow (tf.data, clu's summary writer): its C++
# warnings (an input error logged by every worker, each with its Python traceback)
# would bury a command's one-line error. TF_CPP_MIN_LOG_LEVEL=0 brings them back.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# TensorFlow 2.21 announces its oneDNN kernels on import, before that level applies
# (two lines on every command that imports it). TensorFlow here only schedules
# tf.data and writes summaries, so its oneDNN kernels buy nothing; =1 brings them back.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
