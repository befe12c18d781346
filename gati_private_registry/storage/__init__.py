"""Persistence: the database (SQLAlchemy), the blob store and the changes feed."""
