"""From records to model input: column kinds and typing, TFDV statistics, schema and
validation, and the encodings of each data kind (tables, images)."""
