"""Trackway: a self-hosted event-tracking API."""

__version__ = "0.1.0"
