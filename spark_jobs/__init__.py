"""The Databricks job that loads one archived file: a stage task and a Delta MERGE target task."""
