"""tfresp.explain"""
