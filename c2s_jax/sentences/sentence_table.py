"""A sentence table written by `c2s sentences` (Parquet + meta.json) as a corpus dataset:
obs columns, sentence lengths and the table's own vocabulary, fit and normalization target
read in one pass; the genes of chosen rows read again on demand, row group by row group,
so a corpus build never holds the whole table.
"""

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from c2s_jax.errors import InputError
from c2s_jax.sentences import inverse
from c2s_jax.sentences.cell_sentences import SentenceStats
from c2s_jax.sentences.sentence_files import metadata_path
from c2s_jax.sentences.vocabulary import GeneVocabulary

PARQUET_MAGIC = b"PAR1"


def is_sentence_table(path: str | os.PathLike) -> bool:
    """Whether `path` is a Parquet file (by content), i.e. a `c2s sentences` table."""
    local = Path(path)
    if "://" in os.fspath(path) or not local.is_file():
        return False
    with open(local, "rb") as stream:
        return stream.read(4) == PARQUET_MAGIC


class SentenceTable:
    """One `c2s sentences` table and its metadata.

    Args:
      path: the .parquet table; its ``.meta.json`` must lie beside it.

    Raises:
      InputError: the metadata is missing or unreadable.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_file = metadata_path(self.path)
        try:
            self.meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(
                f"{self.path}: a Parquet table without its metadata {meta_file.name}; a corpus "
                "reads the tables `c2s sentences` writes, metadata included"
            ) from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{meta_file}: unreadable metadata ({err})") from None
        self.vocabulary = GeneVocabulary.from_dict(self.meta["vocabulary"])
        self.symbols = np.asarray(self.vocabulary.symbols, dtype=object)
        self._gene_index = pd.Index(self.vocabulary.symbols)
        self.fit = inverse.InverseFit(**self.meta["inverse_fit"])
        self.target_sum = float(self.meta["target_sum"])
        self.stats = SentenceStats(**self.meta["stats"])
        # Obs columns as dictionary codes: categoricals in pandas, a few bytes per cell.
        # No pre-buffering: with it, a scan over every batch keeps the bytes of the whole
        # file allocated (measured: 247 MiB held at the end of a 247 MiB table), without,
        # nothing; memory must follow the batch, not the table.
        self._file = pq.ParquetFile(
            self.path, read_dictionary=self.meta.get("obs_keys", []), pre_buffer=False
        )

    def check_obs_columns(self, columns: Sequence[str]) -> None:
        """Raises InputError naming any of `columns` the table lacks."""
        present = set(self._file.schema_arrow.names)
        missing = [c for c in columns if c not in present]
        if missing:
            raise InputError(
                f"{self.path}: the sentence table has no obs column {missing}; write it with "
                f"`c2s sentences ... --obs {' '.join(columns)}`"
            )

    def scan(
        self, obs_keys: Sequence[str], batch_size: int
    ) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        """(obs, [n] int64 sentence lengths) batch by batch, in row order; cell names are
        left for `names` (decoding them is most of a scan's time)."""
        self.check_obs_columns(obs_keys)
        # Tables that record each sentence's length are scanned without the sentences;
        # older ones count the words of each.
        stored = "sentence_length" in self._file.schema_arrow.names
        length_column = "sentence_length" if stored else "cell_sentence"
        columns = [*obs_keys, length_column]
        for batch in self._file.iter_batches(batch_size=batch_size, columns=columns):
            lengths = batch.column(length_column)
            if not stored:
                lengths = pc.list_value_length(pc.utf8_split_whitespace(lengths))
            obs = batch.select(list(obs_keys)).to_pandas() if obs_keys else pd.DataFrame()
            yield obs, np.asarray(lengths.fill_null(0), np.int64)

    def names(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows)] object cell names of sorted `rows`."""
        return self._column_at("cell_name", rows).to_numpy(zero_copy_only=False)

    def genes(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ranked gene ids of sorted `rows`: (gene_ids [total] int32, indptr [rows + 1])."""
        pieces = [self._ids(s) for s in self._column_at("cell_sentence", rows).to_pylist()]
        indptr = np.zeros(len(pieces) + 1, np.int64)
        np.cumsum([len(p) for p in pieces], out=indptr[1:])
        gene_ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
        return gene_ids.astype(np.int32), indptr

    def _column_at(self, column: str, rows: np.ndarray) -> pa.ChunkedArray:
        """One column's values at sorted `rows`; row groups without a wanted row are not
        read."""
        rows = np.asarray(rows, np.int64)
        pieces: list[pa.Array] = []
        start = 0
        for group in range(self._file.num_row_groups):
            stop = start + self._file.metadata.row_group(group).num_rows
            wanted = rows[(rows >= start) & (rows < stop)] - start
            if len(wanted):
                values = self._file.read_row_group(group, columns=[column]).column(column)
                pieces.extend(values.take(pa.array(wanted)).chunks)
            start = stop
        taken = pa.chunked_array(pieces, self._file.schema_arrow.field(column).type)
        if len(taken) != len(rows):
            raise InputError(f"{self.path}: rows beyond the table's {start} asked for")
        return taken

    def _ids(self, sentence: str | None) -> np.ndarray:
        words = (sentence or "").split()
        ids = self._gene_index.get_indexer(words)
        if (ids < 0).any():
            unknown = words[int(np.flatnonzero(ids < 0)[0])]
            raise InputError(
                f"{self.path}: gene '{unknown}' of a sentence is not in the metadata's "
                "vocabulary; the table and its .meta.json do not belong together"
            )
        return ids
