"""avemo core library: features, model, co-learning, metrics, checkpoints.

A plain library: it never imports Ray (tests/avemo_core/test_no_ray.py checks it), so it runs in one
process, inside Ray Data/Train workers, or in a notebook alike.
"""

__version__ = "0.1.0"
