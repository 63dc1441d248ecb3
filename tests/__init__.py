"""airflow-cleanrooms tests: one package per kind of test, so modules import each other by package name."""
