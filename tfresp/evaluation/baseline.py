""""Is the big model worth it?": a TF-IDF (word 1–2 grams) + logistic-regression baseline beside a text model.

Trained on the same training split and scored on the same test split as the run's model (scikit-learn is the
engine); its C is chosen on the run's validation split when there is one (as the model's early stopping is).
Under DP it is not computed, and the report says the comparison is not covered: a non-private baseline fitted on
the private rows would be a release outside the budget.
"""
from __future__ import annotations

import numpy as np

C_GRID = (0.25, 1.0, 4.0, 16.0)


def tfidf_logreg(train_text, train_y, test_text, test_y, seed: int = 0, val_text=None, val_y=None) -> dict:
    """Test accuracy of TF-IDF + logistic regression; C from ``C_GRID`` by validation accuracy (else C=4)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    xtr = vec.fit_transform(list(train_text))

    def fit(c):
        return LogisticRegression(max_iter=2000, C=c, random_state=seed).fit(xtr, train_y)

    c, chosen = 4.0, "fixed"
    if val_text is not None and len(val_y):
        xva = vec.transform(list(val_text))
        scores = {c: float(np.mean(fit(c).predict(xva) == np.asarray(val_y))) for c in C_GRID}
        c = max(scores, key=lambda k: (scores[k], -abs(np.log(k))))
        chosen = "validation"
    pred = fit(c).predict(vec.transform(list(test_text)))
    return {"method": f"TF-IDF (1-2 grams, min_df 2, sublinear tf) + logistic regression (C={c:g}, chosen: {chosen})",
            "accuracy": float(np.mean(pred == np.asarray(test_y))), "vocabulary": int(len(vec.vocabulary_)),
            "C": float(c)}


def text_baseline_section(ctx, model_accuracy: float) -> dict:
    """The report's ``evaluation.baseline`` for a text run."""
    if ctx.config.privacy is not None:
        return {"skipped": "not computed under DP: a non-private baseline fitted on the private training rows "
                           "would be a release outside the privacy budget, so the comparison is not covered"}
    col = ctx.config.data.text
    data = ctx.data
    val = data.validation
    base = tfidf_logreg(data.train.frame[col].astype(str), data.train.y, data.test.frame[col].astype(str),
                        data.test.y, ctx.config.seed,
                        val.frame[col].astype(str) if val is not None else None,
                        val.y if val is not None else None)
    margin = model_accuracy - base["accuracy"]
    base["model_accuracy"] = float(model_accuracy)
    base["margin"] = float(margin)
    base["verdict"] = ("the model beats the baseline" if margin > 0 else
                       "the baseline is as good or better: the large model is not worth it on this data")
    return base
