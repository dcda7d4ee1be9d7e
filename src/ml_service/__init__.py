"""ML Service: a self-hosted recommendation engine for Totara learning platforms."""

__version__ = "0.1.0"
