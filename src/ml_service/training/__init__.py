"""Splitting, metrics, tuning and the per-tenant training pipeline."""
