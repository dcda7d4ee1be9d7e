"""Parsing, validation and feature building for Totara export files."""
