"""XTREME tasks as QSL-ready datasets, and their metrics (tasks/scoring)."""
