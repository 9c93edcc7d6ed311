"""Alembic migration scripts; a package so that a wheel install ships them."""
