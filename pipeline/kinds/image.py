"""Images (`data.kind: image`): a folder, glob or gs:// pattern of image files, one record a
file, whose id is its path.

There is no typing stage: decoded images are already typed. TFDV profiles per-image features
(size, mode, format, bytes, intensity), the encoding comes from the config (size, mode,
likelihood), attribution is by square patch, and decoded records are PNG files with an index.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

from configs import VaepipeConfig
from pipeline.core.errors import BundleError
from pipeline.core.fs import write_bytes
from pipeline.core.records import DEAD
from pipeline.features.image_encoding import ImageEncoding
from pipeline.features.statistics import ComputeStatistics, stats_options
from pipeline.kinds import Prepared
from pipeline.sinks.images import decoded_image_name, png_bytes
from pipeline.sources.files import match_inputs
from pipeline.sources.images import PIXELS, ReadImages, image_pattern

IMAGES, INDEX = "images", "index"
IMAGE_INDEX_SCHEMA = pa.schema([("record_id", pa.string()), ("image", pa.string())])


class ImageKind:
    name = "image"

    def encoding_from_json(self, text: str) -> ImageEncoding:
        return ImageEncoding.from_json(text)

    def check_inputs(self, bundle, input_pattern: str, config: VaepipeConfig) -> list[str]:
        """The config reads images as the model was trained on them, and at least one file
        matches (one is listed, not the whole folder: the job's MatchFiles lists them)."""
        if input_pattern.startswith("bq://"):
            raise BundleError("image models read image files, not BigQuery rows")
        encoding, image = bundle.encoding, config.image
        trained = (encoding.height, encoding.width, encoding.mode)
        if (image.height, image.width, image.mode) != trained:
            raise BundleError(
                f"the config reads {image.height} x {image.width} {image.mode} images but the "
                f"model in {bundle.directory} was trained on {trained[0]} x {trained[1]} "
                f"{trained[2]} images (image.height, image.width, image.mode)"
            )
        return match_inputs(image_pattern(input_pattern), limit=1)

    def prepare(self, root, input_pattern: str, config: VaepipeConfig, curated_schema) -> Prepared:
        read = root | "ReadRecords" >> ReadImages(
            input_pattern, config.image, config.data.chunk_rows
        )
        encoding = ImageEncoding.from_config(config)
        options = stats_options(config.schema.max_vocabulary, schema=curated_schema)
        records = read["records"]
        stats = records | "ComputeStatistics" >> ComputeStatistics(encoding.kinds, options)
        encoding_pc = root | "ImageEncoding" >> beam.Create([encoding])
        return Prepared(records, stats, encoding_pc, encoding.kinds, [read[DEAD]])

    def read_typed(self, root, input_pattern: str, encoding, config: VaepipeConfig):
        image, rows = config.image, config.data.chunk_rows
        read = root | "ReadRecords" >> ReadImages(input_pattern, image, rows)
        return read["records"], [read[DEAD]]

    def for_scoring(self, encoding: ImageEncoding, config: VaepipeConfig) -> ImageEncoding:
        # The run's patch size: attribution needs no retraining.
        return dataclasses.replace(encoding, patch_size=config.image.patch_size)

    def decoded_schema(self, encoding: ImageEncoding, columns=None) -> pa.Schema:
        return IMAGE_INDEX_SCHEMA

    def decoded_table(
        self,
        encoding: ImageEncoding,
        record_ids: Sequence[str],
        values: np.ndarray,
        output_dir: str,
        config: VaepipeConfig | None = None,
        columns=None,
    ) -> pa.Table:
        """One PNG file per record under OUT/images/, and the index rows (record_id, image)."""
        frame = encoding.decode(values)
        paths = []
        for record_id, pixels in zip(record_ids, frame[PIXELS], strict=True):
            path = os.path.join(output_dir, IMAGES, decoded_image_name(record_id))
            write_bytes(path, png_bytes(pixels))
            paths.append(path)
        ids = list(record_ids)
        return pa.Table.from_pydict({"record_id": ids, "image": paths}, schema=IMAGE_INDEX_SCHEMA)

    def decoded_tables_dir(self, output_dir: str) -> str:
        return os.path.join(output_dir, INDEX)


KIND = ImageKind()
