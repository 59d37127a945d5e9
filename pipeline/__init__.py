"""vaepipe's pipeline, laid out by the data flow (arrows run one way):

    cli -> jobs -> scoring -> artifacts -> kinds -> features -> sources | sinks -> core

`sources` read records, `features` type, profile (TFDV) and encode them, `kinds` says what a
data kind (table, image) needs of each, `artifacts` are the bundle and the prepared shards,
`scoring` turns model outputs into flags and codes, `jobs` wire Beam pipelines, and `cli` is
the command line. The model itself is `vae_model`, the config schema `configs`; the Python
API is the `vaepipe` package.
"""
