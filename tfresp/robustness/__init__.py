"""tfresp.robustness"""
