"""Re-derive a finished run's privacy claim from its recorded mechanisms (``tfresp report RUN --check``).

report.json lists every spend of the run's privacy budget with its parameters (DP-SGD: σ, q, steps,
sampling; Laplace/Gaussian releases: their noise scale). Here each spend becomes a ``dp_accounting`` event
again, they are composed with the recorded accountant at the recorded δ, and the result must equal the
headline ``privacy.epsilon``; the top-level DP-SGD fields must match the recorded DP-SGD spend. A report
that was edited, or written by code whose numbers no longer match its mechanisms, fails.
"""
from __future__ import annotations

import math
from typing import List

import dp_accounting

from tfresp.privacy import accounting
from tfresp.privacy.budget import event_from_params

RTOL = 1e-6


def problems(report: dict) -> List[str]:
    """Every disagreement between the report's privacy claim and its recorded mechanisms (empty: consistent)."""
    sec = report.get("privacy")
    if not sec:
        return []
    budget = sec.get("budget")
    if sec.get("level") == "client" and budget is None:  # federated DP-FedAvg: one subsampled Gaussian per round
        return _client_level(sec)
    if not isinstance(budget, dict) or not budget.get("spends"):
        return ["`privacy.budget`: no recorded mechanisms to re-derive ε from. Received: "
                f"{type(budget).__name__}. Remedy: re-run the training with this tfresp version"]
    out = []
    try:
        delta = float(sec["delta"])
        events = [event_from_params(s["mechanism"], s["params"]) for s in budget["spends"]]
        acc = accounting.make_dp_accountant(budget.get("accountant", sec.get("accountant", "pld")))
        noiseless = any(s["mechanism"] in ("dp_sgd", "gaussian") and float(s["params"].get("noise_multiplier", 1))
                        <= 0 for s in budget["spends"])
        if noiseless:
            derived = math.inf
        else:
            acc.compose(dp_accounting.ComposedDpEvent(events))
            derived = float(acc.get_epsilon(delta))
    except (KeyError, TypeError, ValueError) as err:
        return [f"`privacy.budget.spends`: a recorded mechanism is incomplete ({err}). Remedy: re-run the training"]
    claimed = float(sec.get("epsilon", math.nan))
    if not (derived == claimed or math.isclose(derived, claimed, rel_tol=RTOL)):
        out.append(f"`privacy.epsilon`: does not match the recorded mechanisms. Received: epsilon={claimed:.6g}; "
                   f"dp-accounting gives {derived:.6g} at delta={delta:g} from {len(events)} recorded spend(s) "
                   f"({', '.join(s['source'] for s in budget['spends'])}). Remedy: the report was edited or is stale; "
                   "re-run the training")
    if float(budget.get("delta", delta)) != delta:
        out.append(f"`privacy.delta`: {delta:g} differs from the budget's recorded delta {budget.get('delta')}. "
                   "Remedy: the report was edited or is stale; re-run the training")
    sgd = [s["params"] for s in budget["spends"] if s["source"] == "privacy.dp_sgd"]
    for key, top in (("noise_multiplier", "noise_multiplier"), ("sampling_rate", "sampling_rate"),
                     ("steps", "steps"), ("sampling", "sampling")):
        if sgd and top in sec and sec[top] != sgd[0][key]:
            out.append(f"`privacy.{top}`: does not match the recorded DP-SGD mechanism. Received: {top}="
                       f"{sec[top]!r}; recorded {sgd[0][key]!r}. Remedy: the report was edited or is stale")
    return out


def _client_level(sec: dict) -> List[str]:
    try:
        derived = accounting.compute_epsilon(float(sec["effective_noise_multiplier"]), float(sec["sampling_rate"]),
                                             int(sec["rounds"]), float(sec["delta"]), sec.get("accountant", "pld"))
    except (KeyError, TypeError, ValueError) as err:
        return [f"`privacy`: the client-level mechanism is incomplete ({err}). Remedy: re-run the training"]
    claimed = float(sec.get("epsilon", math.nan))
    if derived == claimed or math.isclose(derived, claimed, rel_tol=RTOL):
        return []
    return [f"`privacy.epsilon`: does not match the recorded client-level mechanism. Received: epsilon={claimed:.6g}; "
            f"dp-accounting gives {derived:.6g}. Remedy: the report was edited or is stale; re-run the training"]


def check_run(run_dir) -> List[str]:
    """:func:`problems` of the report.json in ``run_dir``."""
    from tfresp.report.compare import load_report

    return problems(load_report(run_dir))
