"""From expression matrices to cell sentences and back: readers of h5ad, zarr, 10x and
loom files in blocks of cells, normalization, ranking of genes by expression, the gene
vocabulary and symbols, sentence files (Parquet), the inverse fit from rank to expression,
and the embedded datasets."""
