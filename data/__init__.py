"""Tick data: one event schema, converters, validator, Parquet store, merged reader, synthetic market."""
