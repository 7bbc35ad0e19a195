"""Typed configuration: schemas (dataclasses + Enums), cross-field validation, ConfigStore registration."""
