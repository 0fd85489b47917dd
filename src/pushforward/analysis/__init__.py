"""Analysing flows: invertibility diagnostics, likelihood thresholds and typicality tests."""
