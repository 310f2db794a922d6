"""Names that say what a column or array holds: scores (and which kind), targets, class names
that read as booleans. No I/O, and no pyarrow: NPY runs import this module, and never pyarrow
(~20 ms of start-up)."""

from __future__ import annotations

from xentcli.errors import LayoutError
from xentcli.plain import name_list

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


TRUE_FALSE = ("True", "TRUE", "true", "False", "FALSE", "false")  # pyarrow's boolean spellings but 1 and 0


def names_true_false(classes: tuple[str, ...]) -> bool:
    """Whether --classes names a class with a boolean's spelling (True, false, …)."""
    return any(name in TRUE_FALSE for name in classes)


def check_boolean_names(classes: tuple[str, ...], path: str, where: str) -> None:
    """Boolean labels are the classes 0 (False) and 1 (True): --classes may name them so, and only so."""
    if len(classes) == 2 and classes[0].lower() == "false" and classes[1].lower() == "true":
        return
    raise LayoutError(f"the labels in {where} are booleans (False is class 0, True class 1), and --classes names the classes "
                      f"{name_list(classes)}", path=path, hint="give --classes False,True, or leave --classes out")
