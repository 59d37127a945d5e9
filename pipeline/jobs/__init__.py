"""The jobs, wiring only, each read top to bottom: prepare (training data, Beam), train,
score, validate, decode, and run (the scheduled job); `runner` runs a built pipeline."""
