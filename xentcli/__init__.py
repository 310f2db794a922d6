"""xent: softmax cross-entropy, exact and fast, for machine-learning eval dumps."""

import os

# xent runs its own pool of worker threads over chunks; OpenBLAS' threads (numpy's matrix products
# in the numpy kernels) would only spin beside them. Set before numpy is first imported; a value the
# user exported wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
