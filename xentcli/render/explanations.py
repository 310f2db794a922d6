"""The sentences that explain why a framework's number differs from the true loss: prose for the
renderers, computed from the Report (its summary, the frameworks' documents and the options)."""

from __future__ import annotations

import math

from xentcli.report import Report

def _differs(a: float | None, b: float | None) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return not (a is b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)))
    return abs(a - b) > 1e-6 * max(1.0, abs(b))


def explain_differences(report: Report) -> list[str]:
    """One sentence per rule that makes a framework's default number differ from the true loss."""
    if report.input.head != "softmax":
        return _sigmoid_differences(report)
    summary, options, info = report.summary, report.loss, report.input
    documents = {doc["framework"]: doc for doc in report.compare}
    truth_loss = summary["loss_mean"]
    lines = []
    if summary["ignored"]:
        ignore = options.ignore_index
        optax_fate = (
            f"optax, unless told (where=labels != {ignore}), reads it as class {info.num_classes + ignore} "
            "(negative labels index from the end)"
            if ignore is not None and -info.num_classes <= ignore < 0
            else f"optax, unless told (where=labels != {ignore}), gives those rows NaN"
        )
        lines.append(
            f"{summary['ignored']:,} rows carry the label {ignore}: PyTorch leaves them out of its mean "
            f"(ignore_index={ignore}), Keras only when told (ignore_class={ignore}), tf.nn rejects them; "
            f"{optax_fate}."
        )
    for doc in documents.values():
        for error in doc["errors"]:
            lines.append(
                f"{doc['name']} would raise {error.split(' which')[0]}; the {doc['error_rows']:,} rows "
                "it rejects are left out of its numbers here."
            )
    optax = documents.get("optax")
    if optax and isinstance(optax["loss"], float) and math.isnan(optax["loss"]) and summary["nonfinite"]:
        lines.append(
            "optax gives NaN: a label outside [-C, C) indexes past the logits (take_along_axis fills NaN); "
            "labels in [-C, 0) wrap around to C + label."
        )
    if options.class_weights is not None:
        torch = documents.get("torch")
        denominator = f" = {torch['per_reduction'].get('sum', 0) / torch['loss']:.6g}" if torch and torch["loss"] else ""
        lines.append(
            f"Class weights: PyTorch divides the weighted sum by Σ w[y]{denominator} for integer targets "
            "(by the row count for probability targets); Keras, given them as sample weights, divides by "
            "the row count (sum_over_batch_size); tf.nn and optax take no weights."
        )
    if info.weights is not None:
        zero = f" counts the {report.zero_weight_rows:,} zero-weight rows in its denominator" if report.zero_weight_rows else " divides by the row count"
        lines.append(
            f"Sample weights: Keras' sum_over_batch_size{zero} (mean_with_sample_weight divides by Σ weights); "
            "PyTorch, tf.nn and optax take no sample weights."
        )
    if options.label_smoothing:
        lines.append(
            f"Label smoothing {options.label_smoothing:g}: PyTorch, optax and Keras' CategoricalCrossentropy "
            "smooth the targets; tf.nn and Keras' SparseCategoricalCrossentropy do not."
        )
    keras = documents.get("keras")
    if info.input_kind == "probs" and keras and _differs(keras["loss"], truth_loss):
        lines.append(
            "Keras clips probabilities to [1e-7, 1 - 1e-7] before the log: a target probability below 1e-7 "
            "costs at most 16.118 there, and SparseCategoricalCrossentropy on TensorFlow clips before normalising."
        )
    if (
        optax and not lines and info.input_kind == "logits" and info.score_dtype != "float64"
        and _differs(optax["loss"], truth_loss)
    ):
        lines.append(
            "optax's integer-label path computes logsumexp(z) - z[y] in the logits' float32: with large logits "
            "the difference keeps only ~1e-7 of their magnitude in absolute precision."
        )
    if not lines and not any(_differs(doc["loss"], truth_loss) for doc in documents.values()):
        lines.append("Every framework's default number equals the true loss (to 1e-6).")
    return lines


def _sigmoid_differences(report: Report) -> list[str]:
    """The same for a sigmoid head's binary cross-entropy (frameworks_sigmoid.py has the rules)."""
    summary, options, info = report.summary, report.loss, report.input
    documents = {doc["framework"]: doc for doc in report.compare}
    lines = []
    if summary["ignored"] or any("no ignore index" in note for doc in documents.values() for note in doc["notes"]):
        lines.append(f"Targets {options.ignore_index}: xent leaves them out; no framework's binary cross-entropy has an "
                     "ignore index, so there they are scored as numbers (a mask or where= leaves them out).")
    for doc in documents.values():
        for error in doc["errors"]:
            lines.append(f"{doc['name']} would raise {error}; the {doc['error_rows']:,} rows it rejects are left out of its numbers here.")
    if options.pos_weight is not None:
        lines.append("pos_weight: PyTorch's BCEWithLogitsLoss applies it (its BCELoss on probabilities does not); Keras, tf.nn, "
                     "optax and scikit-learn take none.")
    if options.class_weights is not None:
        lines.append("Per-label weights: PyTorch multiplies each label's loss and still divides by the elements; the others take none.")
    if info.weights is not None:
        lines.append("Sample weights: Keras (sum_over_batch_size divides by the rows) and scikit-learn (a weighted average) "
                     "apply them; PyTorch, tf.nn and optax do not.")
    if options.label_smoothing:
        lines.append(f"Label smoothing {options.label_smoothing:g}: only Keras smooths (t·(1 − ε) + ε/2); PyTorch, tf.nn, optax "
                     "and scikit-learn score the targets as they are.")
    if info.input_kind != "logits" and documents:
        lines.append("Probabilities: Keras clips them to [1e-7, 1 − 1e-7] in float32, PyTorch clamps each log at −100, "
                     "scikit-learn clips at its dtype's epsilon; tf.nn and optax take logits (here logit(p)).")
    if info.head == "multilabel" and "sklearn" in documents:
        lines.append("scikit-learn's log_loss reads multi-label targets as classes: it sums −log p over the positive labels only.")
    truth_loss = summary["loss_mean"]
    if not lines and not any(_differs(doc["loss"], truth_loss) for doc in documents.values()):
        lines.append("Every framework's default number equals the true loss (to 1e-6).")
    elif not lines:
        unbounded = [doc["name"] for doc in documents.values()
                     if _differs(doc["loss"], truth_loss) and not (isinstance(doc["loss"], float) and math.isfinite(doc["loss"]))]
        if unbounded:  # found in review: a NaN from Keras was explained as lost digits
            lines.append(f"{', '.join(unbounded)}: no finite number — scores beyond float32's ±3.4e38 become ±inf in "
                         "float32 arithmetic (Keras casts to float32 whatever the dtype), and inf − inf is NaN.")
        if any(_differs(doc["loss"], truth_loss) and doc["name"] not in unbounded for doc in documents.values()):
            lines.append("Keras computes in float32 whatever the dtype: its number differs in the digits float32 cannot hold.")
    return lines
