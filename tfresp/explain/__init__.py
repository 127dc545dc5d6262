"""tfresp.explain: LIME and integrated-gradients explanations (report section ``explanations``).

Modules:
    predict: batched, compiled ``inputs -> probabilities`` functions (one trace, fixed-size chunks,
        bounded memory; deduplicated, length-sorted text batches).
    lime_explain: LIME (Ribeiro et al. 2016) for text, raw tabular rows and images with a seed, plus
        the top-k Jaccard stability score across seeds.
    ig: integrated gradients (Sundararajan et al. 2017) with the completeness check and step doubling;
        tabular attributions summed back to raw columns; IG over token embeddings for text models.
    concern: the ``explain`` concern that writes the report section.

Example:
    >>> from tfresp.explain.predict import string_predictor
    >>> from tfresp.explain.lime_explain import explain_text
    >>> exp = explain_text("the flight was late again", string_predictor(text_model), seed=0)
"""
