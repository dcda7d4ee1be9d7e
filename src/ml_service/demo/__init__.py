"""Bundled sample export, its generator and the Totara simulator."""
