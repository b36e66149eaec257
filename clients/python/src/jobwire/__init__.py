"""Jobwire's Python client: the generated ``jobwire.v1`` stubs and, on top, the SDK."""

__all__: list[str] = []
