"""Names that say what a column or array holds: scores (and which kind), targets. No I/O."""

from __future__ import annotations

# Column names that say what the scores are; a score column named otherwise is taken as logits.
SCORE_LIST_NAMES = {
    "logits": "logits",
    "scores": "logits",
    "probs": "probs",
    "probabilities": "probs",
    "log_probs": "log-probs",
    "logprobs": "log-probs",
    # and the singular names of one score per row (a binary head's logit or probability)
    "logit": "logits",
    "score": "logits",
    "prob": "probs",
    "probability": "probs",
    "log_prob": "log-probs",
    "logprob": "log-probs",
}
SCORE_PREFIXES = {"logit_": "logits", "score_": "logits", "prob_": "probs", "log_prob_": "log-probs", "logprob_": "log-probs"}
TARGET_NAMES = ("label", "labels", "target", "targets", "y")
TARGET_PREFIXES = ("label_", "target_")


def kind_from_name(name: str) -> str | None:
    """'probs' for a column called probs or prob_…, 'log-probs' for log_probs…, else None."""
    lowered = name.lower()
    if lowered in SCORE_LIST_NAMES:
        return SCORE_LIST_NAMES[lowered]
    return SCORE_PREFIXES.get(lowered)
