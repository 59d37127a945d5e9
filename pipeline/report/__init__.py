"""The run report: one self-contained HTML page (`write_report`) with the objective per epoch,
calibration, a scored batch, its top anomalies, latent space, drift, code length and samples."""
