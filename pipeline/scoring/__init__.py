"""Scoring: the batch scoring core (shared by the Beam job and the Python API), the
RunInference handler, calibration, and the flags and codes tables."""
