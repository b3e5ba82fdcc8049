"""Cell sentences on disk: a Parquet table plus a JSON metadata file beside it.

The table has one row per cell: `cell_name`, `cell_sentence`, `sentence_length` (its genes,
so a reader that needs only lengths never splits a sentence) and the requested obs columns.
The metadata holds what later stages must not guess: options, vocabulary, the
normalization target and the inverse fit. Both files are written atomically, table first,
so a metadata file always describes a complete table.
"""

import concurrent.futures
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from c2s_jax.errors import InputError
from c2s_jax.sentences.cell_sentences import (
    DataInput,
    SentenceChunk,
    SentenceOptions,
    SentenceStream,
)
from c2s_jax.sentences.ranking import SentenceWriter
from c2s_jax.storage.atomic import atomic_path, check_output_file, write_text_atomic

METADATA_VERSION = 1
# zstd makes the smallest tables; lz4 writes ~1.5x faster at ~1.5x the size.
COMPRESSIONS = ("zstd", "lz4", "snappy", "none")


def metadata_path(table_path: str | os.PathLike) -> Path:
    """`out.parquet` -> `out.meta.json`."""
    path = Path(table_path)
    return path.with_name(path.stem + ".meta.json")


@dataclasses.dataclass(frozen=True)
class WriteSummary:
    """What `write_sentences` produced: the table, its metadata, and the run's figures."""

    table: Path
    metadata: Path
    n_cells: int
    seconds: float
    meta: dict


def write_sentences(
    inputs: Sequence[DataInput],
    output: str | os.PathLike,
    options: SentenceOptions | None = None,
    obs_keys: Sequence[str] = (),
    progress: bool = True,
    compression: str = "zstd",
) -> WriteSummary:
    """Streams inputs into a Parquet table of cell sentences and its metadata.

    Memory is bounded by `options.chunk_size` cells; each chunk becomes a row group.

    Args:
      inputs: AnnData objects or .h5ad paths.
      output: the .parquet path; metadata goes to `metadata_path(output)`.
      options: see `SentenceOptions`.
      obs_keys: obs columns copied into the table.
      progress: show a progress bar.
      compression: Parquet codec, one of `COMPRESSIONS`.
    """
    output = Path(output)
    options = options or SentenceOptions()
    if output.suffix != ".parquet":
        raise InputError(f"{output}: the output must be a .parquet file")
    check_output_file(output)
    if compression not in COMPRESSIONS:
        raise InputError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    began = time.perf_counter()
    stream = SentenceStream(inputs, options, obs_keys, progress)
    with atomic_path(output) as tmp, _BackgroundWriter(tmp, obs_keys, compression) as writer:
        for chunk in stream:
            writer.write(_chunk_table(chunk))
        if stream.stats.n_cells_out == 0:
            raise InputError(
                "no cells to write: no cell of the inputs has an expressed gene that passes "
                "the filters (check --min-genes/--min-cells and the chosen matrix)"
            )
    fit = stream.inverse_fit()
    meta = {
        "format_version": METADATA_VERSION,
        "table": output.name,
        "inputs": [str(x) if not hasattr(x, "obs") else "<AnnData>" for x in inputs],
        "options": dataclasses.asdict(options),
        "obs_keys": list(obs_keys),
        "stats": dataclasses.asdict(stream.stats),
        "target_sum": stream.target_sum(),
        "inverse_fit": dataclasses.asdict(fit),
        "vocabulary": stream.vocabulary.as_dict(),
    }
    write_text_atomic(metadata_path(output), json.dumps(meta, indent=1))
    return WriteSummary(
        output, metadata_path(output), stream.stats.n_cells_out, time.perf_counter() - began, meta
    )


class _BackgroundWriter:
    """Writes row groups on a second thread while the next chunk is being ranked.

    Compressing and writing a row group takes about as long as ranking it, and neither
    holds the GIL for long, so overlapping them nearly halves the wall time. At most one
    write is in flight, which keeps memory at two chunks.
    """

    def __init__(self, path: Path, obs_keys: Sequence[str], compression: str):
        self._path = path
        self._compression = compression
        self._dictionary_columns = list(obs_keys)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._writer: pq.ParquetWriter | None = None
        self._pending: concurrent.futures.Future | None = None

    def __enter__(self) -> "_BackgroundWriter":
        return self

    def write(self, table: pa.Table) -> None:
        """Queues one row group, after the previous one has been written."""
        if self._writer is None:
            # Sentences and names are unique per cell: dictionary encoding only costs time.
            self._writer = pq.ParquetWriter(
                self._path,
                table.schema,
                compression=self._compression,
                use_dictionary=self._dictionary_columns,
            )
        self._wait()
        self._pending = self._pool.submit(self._writer.write_table, table.cast(self._writer.schema))

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def __exit__(self, *exc) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown()
            if self._writer is not None:
                self._writer.close()


def _chunk_table(chunk: SentenceChunk) -> pa.Table:
    text, offsets = SentenceWriter(chunk.symbols).text_buffers(chunk.gene_ids, chunk.indptr)
    sentences = pa.StringArray.from_buffers(
        len(chunk.cell_names), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(text)
    )
    columns = {
        "cell_name": pa.array(chunk.cell_names, pa.string()),
        "cell_sentence": sentences,
        "sentence_length": pa.array(np.diff(chunk.indptr).astype(np.int32)),
    }
    for name in chunk.obs.columns:
        columns[str(name)] = _obs_array(chunk.obs[name])
    return pa.table(columns)


def _obs_array(column: pd.Series) -> pa.Array:
    # Categories become plain values so that every chunk has the same Arrow type.
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(column.cat.categories.dtype)
    if column.dtype == object:
        return pa.array(column.astype("string").to_numpy(na_value=None), pa.string())
    return pa.array(column.to_numpy())


def read_sentences(table: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """Loads a sentence table and its metadata."""
    table = Path(table)
    meta_file = metadata_path(table)
    for path in (table, meta_file):
        if not path.exists():
            raise InputError(f"{path}: no such file (write it with `c2s sentences`)")
    return pq.read_table(table).to_pandas(), json.loads(meta_file.read_text(encoding="utf-8"))
