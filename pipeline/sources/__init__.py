"""Where records come from: files (CSV, Parquet, TFRecord), image folders and BigQuery, read
into `RecordChunk`s plus dead letters. Imports no model code."""
