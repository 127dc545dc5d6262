""""Is the big model worth it?": a TF-IDF (word 1–2 grams) + logistic-regression baseline beside a text model.

Trained on the same training split and scored on the same test split as the run's model (scikit-learn is the
engine). Under DP it is not computed: a non-private baseline fitted on the private rows would be a release outside
the budget.
"""
from __future__ import annotations

import numpy as np


def tfidf_logreg(train_text, train_y, test_text, test_y, seed: int = 0) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    xtr = vec.fit_transform(list(train_text))
    clf = LogisticRegression(max_iter=2000, C=4.0, random_state=seed)
    clf.fit(xtr, train_y)
    pred = clf.predict(vec.transform(list(test_text)))
    return {"method": "TF-IDF (1-2 grams, min_df 2, sublinear tf) + logistic regression (C=4)",
            "accuracy": float(np.mean(pred == np.asarray(test_y))), "vocabulary": int(len(vec.vocabulary_))}


def text_baseline_section(ctx, model_accuracy: float) -> dict:
    """The report's ``evaluation.baseline`` for a text run."""
    if ctx.config.privacy is not None:
        return {"skipped": "not computed under DP: a non-private baseline fitted on the private training rows "
                           "would be a release outside the privacy budget"}
    col = ctx.config.data.text
    data = ctx.data
    base = tfidf_logreg(data.train.frame[col].astype(str), data.train.y, data.test.frame[col].astype(str),
                        data.test.y, ctx.config.seed)
    margin = model_accuracy - base["accuracy"]
    base["model_accuracy"] = float(model_accuracy)
    base["margin"] = float(margin)
    base["verdict"] = ("the model beats the baseline" if margin > 0 else
                       "the baseline is as good or better: the large model is not worth it on this data")
    return base
