"""Recommendation algorithms behind one model type (see base.py)."""
