"""The HTTP face of Trackway: a raw ASGI ingest path in front of a Starlette app."""
