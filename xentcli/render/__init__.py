"""Renderers: Rich tables for people, JSON for machines, Parquet/CSV for per-sample rows."""
