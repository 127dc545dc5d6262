"""tfresp.fairness"""
