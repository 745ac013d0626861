"""Thin typed access to MongoDB and Redis; every call carries a timeout from settings."""
