"""The domain layer: broker behaviour, limits, ids and errors. No protobuf here."""
