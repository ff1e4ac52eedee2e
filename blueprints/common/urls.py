"""Absolute links for emails and jobs, built from BASE_URL (SPEC F7)."""

from __future__ import annotations

from flask import current_app


def absolute_url(endpoint: str, **values) -> str:
    """BASE_URL + the endpoint's path; works outside a request (jobs, CLI)."""
    adapter = current_app.url_map.bind("localhost")
    path = adapter.build(endpoint, values)
    return current_app.config["BASE_URL"] + path
