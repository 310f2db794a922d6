"""xent: softmax cross-entropy, exact and fast, for machine-learning eval dumps."""

__version__ = "0.1.0"
