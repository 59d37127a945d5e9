"""Where results go: Parquet tables and dead letters, BigQuery partitions, PNG files, and the
staging folder that makes a job's outputs appear whole or not at all."""
