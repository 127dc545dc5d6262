"""tfresp.data"""
