"""Build and CI helpers run by the Makefile (runtime-python, check_built_layers.py)."""
