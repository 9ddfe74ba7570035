"""Defaults that the Python API and the command line share, each written once."""

DEFAULT_BATCH_SIZE = 16
"""Chunks per encoder call, or streams (channels of files) decoded together."""

DEFAULT_SIGMA_COND = 0.4
"""Noise put back on the previous chunk in two-step decoding."""
