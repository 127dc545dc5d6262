"""tfresp.compression"""
