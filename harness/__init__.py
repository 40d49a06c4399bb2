"""MLPerf LoadGen harness for cross-lingual XLM-R encoders: CLI, runner, results, compliance, submission."""

__version__ = "0.1.0"
