"""Benchmarks of persistence against raw psycopg, redis-py and LangGraph's PostgresStore.

Run ``python -m benchmarks --help``; ``docs/performance.md`` is its ``--output``.
"""
