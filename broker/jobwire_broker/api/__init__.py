"""The gRPC surface: request validation, status codes, proto <-> domain mapping."""
