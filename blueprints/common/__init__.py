"""Shared, route-less helpers used by several blueprints."""
