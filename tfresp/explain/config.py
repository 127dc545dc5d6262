"""Config of the explanations concern (``explain:`` in the run config; report section ``explanations``)."""
from typing import Literal, Union

from pydantic import Field

from tfresp._configbase import Section


class ExplainConfig(Section):
    """LIME / integrated-gradients explanations written into the report.

    Attributes:
        method: ``lime`` (Ribeiro et al. 2016), ``ig`` (integrated gradients, Sundararajan et al. 2017)
            or ``both`` for the per-example explanations. The global importance always uses IG when the
            model is differentiable in its encoded inputs.
        num_samples: LIME neighbourhood size per explanation.
        examples: number of test examples explained (and plotted) in the report.
        seed: seed of every random draw (LIME neighbourhoods, example choice); same seed, same output.
        top_k: number of features listed per explanation and used by the stability score.
        stability_seeds: LIME is re-run with ``seed, seed+1, ...`` this many times per example; the
            stability score is the mean pairwise Jaccard index of the top-k feature sets.
        ig_steps: initial number of Riemann (trapezoid) steps of IG.
        ig_max_steps: steps are doubled until completeness holds or this many are used.
        ig_tolerance: completeness tolerance, relative to ``|F(x) - F(baseline)|``.
        ig_baseline: ``mean`` (mean encoded training row) or ``zero`` (all-zero encoded row).
        global_sample: test rows used for the global importance (mean |attribution| per feature).
        misclassified_per_group: misclassified test examples explained per sensitive group.
        batch_size: fixed batch size of the compiled predict / gradient functions.
        shap: also compute SHAP values (tabular runs; ``shap`` KernelExplainer over raw columns) for
            ``shap_rows`` test rows, with the additivity check and a cross-check against IG on the same rows.
        shap_background: held-out rows (validation, else test) forming SHAP's background distribution.
        shap_nsamples: coalitions sampled per row (``auto``: 2·M + 2048, exact enumeration when 2^M is smaller).
    """

    method: Literal["lime", "ig", "both"] = "lime"
    num_samples: int = Field(1000, ge=10, le=100_000)
    examples: int = Field(5, ge=0, le=1000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    top_k: int = Field(5, ge=1)
    stability_seeds: int = Field(5, ge=2, le=50)
    ig_steps: int = Field(32, ge=2)
    ig_max_steps: int = Field(1024, ge=2)
    ig_tolerance: float = Field(0.05, gt=0, lt=1)
    ig_baseline: Literal["mean", "zero"] = "mean"
    global_sample: int = Field(200, ge=1)
    misclassified_per_group: int = Field(2, ge=0)
    batch_size: int = Field(512, ge=1, le=65536)
    shap: bool = False
    shap_rows: int = Field(20, ge=1, le=1000)
    shap_background: int = Field(20, ge=1, le=1000)
    shap_nsamples: Union[Literal["auto"], int] = "auto"
