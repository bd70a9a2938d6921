"""Synthetic training data for alpr-edge models."""
