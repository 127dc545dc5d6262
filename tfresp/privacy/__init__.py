"""tfresp.privacy"""
