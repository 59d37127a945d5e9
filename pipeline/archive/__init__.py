"""The error-bounded table archive: records coded under the model's own likelihood.

The ELBO is a code length: a record costs the bits of its latent code under the prior N(0, I)
(the rate) plus the bits of its values under the decoder's distributions given that code.
`compress` makes that literal: the posterior mean is quantized and entropy-coded under the
prior, each category is coded under the decoder's softmax, each number is quantized on a
tolerance grid (`quantize`) and coded under the decoder's Gaussian, and whatever the decoder
cannot predict (unseen categories, values off the grid) is coded exactly after an escape.

Settings: the config's `compress` section (`configs.schema.CompressConfig`). Modules:
`quantize` (tolerance grids), `network` (the decoder as a float64 numpy function both sides
compute alike), `context` (the adaptive context mixtures values are coded under, primed by an
optional dictionary), `coder` (one block of records <-> bytes, with constriction's range
coder), `blocks` (a typed chunk <-> a checked block), `dictionary` (the records both sides
count first: the training rows a bundle keeps, or a table), `format` (the archive's files),
`verify` (the error bound), `api` (plain functions for the Python API).
"""
