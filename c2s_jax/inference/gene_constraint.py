"""Decoding constraint for cell sentences: only known gene symbols, each at most once,
and, when asked, exactly a given number of them.

A cell sentence is a run of gene symbols, each tokenized as it appears after a space,
closed by a period (or EOS). The symbols' token sequences form a trie; a decoding row
walks it token by token. From a node the row may continue into a child, or, when the
node completes a gene not yet used, start the next gene (a child of the root) or close
the sentence. After the period only EOS is allowed.

A row that wants N genes may close only on completing its N-th gene and may start no
gene after it, so the sentence holds exactly N genes; only a row that has used up every
gene of the trie closes with fewer. Without a wanted count a row may close after any
gene.

"At most once" needs more than a used-gene flag when genes share token prefixes: a row
must not enter a prefix whose genes are all used. So every row keeps, per trie node, how
many of its genes below (itself included) are still unused, and a child is allowed only
while that count is positive. Completing a gene decrements the counts on its path.

Everything here is arrays, so the walk runs inside the jitted decode loop. Shape
letters: B rows, V vocabulary, N trie nodes (node 0 is the root), F most children of a
non-root node, G genes, D deepest gene (in tokens).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

ROOT = 0
# The sentence's closing piece: what the corpus writes after the last gene.
PERIOD = "."


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ConstraintTables:
    """The gene trie as arrays (see the module docstring)."""

    root_child_V: jax.Array  # int32: child of the root reached by each token, or -1
    child_token_NF: jax.Array  # int32: tokens leading to each node's children, -1 = none
    child_node_NF: jax.Array  # int32: those children
    gene_of_N: jax.Array  # int32: the gene a node completes, or -1
    path_GD: jax.Array  # int32: nodes from the root's child to each gene's end; N = none
    terminator_V: jax.Array  # bool: tokens that close a sentence (period pieces and EOS)
    genes_below_N: jax.Array  # int32: genes completed at or below each node
    eos_id: jax.Array  # [] int32


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ConstraintState:
    """Each row's place in the trie."""

    node_B: jax.Array  # int32
    used_BG: jax.Array  # bool: genes already written
    unused_below_BN: jax.Array  # int32: unused genes at or below each node
    closed_B: jax.Array  # bool: the period was written; only EOS may follow
    written_B: jax.Array  # int32: genes completed so far
    wanted_B: jax.Array  # int32: genes the sentence must hold; 0 = any number


def build_tables(
    gene_tokens: Sequence[np.ndarray], vocab_size: int, terminator_ids: Sequence[int], eos_id: int
) -> ConstraintTables:
    """The trie of the genes' token sequences.

    Args:
      gene_tokens: per gene, its token ids as it appears after a space (non-empty).
      vocab_size: the model's vocabulary size V (logits width).
      terminator_ids: tokens that may close a sentence after a complete gene; EOS is
        always one.
      eos_id: the end-of-sequence token.

    Returns:
      The tables. A gene whose tokens equal an earlier gene's adds nothing (it could not
      be told apart in the output anyway).
    """
    children: list[dict[int, int]] = [{}]
    gene_of = [-1]
    paths = []
    for gene, tokens in enumerate(gene_tokens):
        if len(tokens) == 0:
            raise ValueError(f"gene {gene} has no tokens")
        node, path = ROOT, []
        for token in np.asarray(tokens).tolist():
            if not 0 <= token < vocab_size:
                raise ValueError(
                    f"gene {gene}: token {token} is outside the vocabulary [0, {vocab_size})"
                )
            if token not in children[node]:
                children[node][token] = len(children)
                children.append({})
                gene_of.append(-1)
            node = children[node][token]
            path.append(node)
        if gene_of[node] < 0:
            gene_of[node] = gene
        paths.append(path if gene_of[node] == gene else [])
    n_nodes = len(children)
    root_child = np.full(vocab_size, -1, np.int32)
    for token, child in children[ROOT].items():
        root_child[token] = child
    fanout = max([len(c) for c in children[1:]] + [1])
    child_token = np.full((n_nodes, fanout), -1, np.int32)
    child_node = np.full((n_nodes, fanout), -1, np.int32)
    for node in range(1, n_nodes):
        for slot, (token, child) in enumerate(children[node].items()):
            child_token[node, slot], child_node[node, slot] = token, child
    depth = max([len(p) for p in paths] + [1])
    path_table = np.full((len(paths), depth), n_nodes, np.int32)
    genes_below = np.zeros(n_nodes, np.int32)
    for gene, path in enumerate(paths):
        path_table[gene, : len(path)] = path
        genes_below[path] += 1
    terminator = np.zeros(vocab_size, bool)
    terminator[list(terminator_ids)] = True
    terminator[eos_id] = True
    return ConstraintTables(
        root_child_V=jnp.asarray(root_child),
        child_token_NF=jnp.asarray(child_token),
        child_node_NF=jnp.asarray(child_node),
        gene_of_N=jnp.asarray(np.array(gene_of, np.int32)),
        path_GD=jnp.asarray(path_table),
        terminator_V=jnp.asarray(terminator),
        genes_below_N=jnp.asarray(genes_below),
        eos_id=jnp.int32(eos_id),
    )


def tables_for_tokenizer(tokenizer, symbols: Sequence[str], vocab_size: int) -> ConstraintTables:
    """Tables for gene ``symbols`` under a :class:`~c2s_jax.corpus.tokenizer.Tokenizer`;
    every piece that is exactly a period closes a sentence."""
    rows = [tokenizer.encode(f" {s}") for s in symbols]
    periods = [i for i in range(tokenizer.vocab_size) if tokenizer.piece(i) == PERIOD]
    return build_tables(rows, vocab_size, periods, tokenizer.eos_id)


def distinct_genes(tables: ConstraintTables) -> int:
    """How many genes a sentence can hold at most (genes with distinct token sequences)."""
    n_nodes = tables.genes_below_N.shape[0]
    return int(np.sum(np.asarray(tables.path_GD[:, 0]) < n_nodes))


def tokens_for_genes(tables: ConstraintTables, n_genes: int) -> int:
    """Tokens that any sentence of ``n_genes`` genes fits in, the period and EOS included:
    the token counts of the ``n_genes`` longest genes, plus two."""
    n_nodes = tables.genes_below_N.shape[0]
    lengths_G = np.sum(np.asarray(tables.path_GD) < n_nodes, axis=1)
    return int(np.sort(lengths_G)[::-1][:n_genes].sum()) + 2


def initial_state(
    tables: ConstraintTables, batch: int, wanted_B: jax.Array | None = None
) -> ConstraintState:
    """Every row at the root with no gene written.

    Args:
      tables: the trie.
      batch: rows B.
      wanted_B: [B] int32 genes each row's sentence must hold (0 = any number); default:
        any number for every row.
    """
    n_genes, n_nodes = tables.path_GD.shape[0], tables.genes_below_N.shape[0]
    if wanted_B is None:
        wanted_B = jnp.zeros(batch, jnp.int32)
    return ConstraintState(
        node_B=jnp.zeros(batch, jnp.int32),
        used_BG=jnp.zeros((batch, n_genes), bool),
        unused_below_BN=jnp.broadcast_to(tables.genes_below_N, (batch, n_nodes)),
        closed_B=jnp.zeros(batch, bool),
        written_B=jnp.zeros(batch, jnp.int32),
        wanted_B=jnp.asarray(wanted_B, jnp.int32),
    )


def _children(tables: ConstraintTables, state: ConstraintState):
    """Each row's children: tokens [B, F], nodes [B, F], and whether each is open."""
    tokens_BF = tables.child_token_NF[state.node_B]
    nodes_BF = tables.child_node_NF[state.node_B]
    unused_BF = jnp.take_along_axis(state.unused_below_BN, jnp.maximum(nodes_BF, 0), axis=1)
    return tokens_BF, nodes_BF, (nodes_BF >= 0) & (unused_BF > 0)


def _completes_unused_gene(tables: ConstraintTables, state: ConstraintState) -> jax.Array:
    gene_B = tables.gene_of_N[state.node_B]
    used_B = jnp.take_along_axis(state.used_BG, jnp.maximum(gene_B, 0)[:, None], axis=1)[:, 0]
    return (state.node_B != ROOT) & (gene_B >= 0) & ~used_B


def allowed_tokens(tables: ConstraintTables, state: ConstraintState) -> jax.Array:
    """[B, V] bool: the tokens each row may write next."""
    B = state.node_B.shape[0]
    V = tables.root_child_V.shape[0]
    root_child_V = tables.root_child_V
    may_end_B = _completes_unused_gene(tables, state)
    # Ending the current gene makes it the sentence's (written + 1)-th.
    any_count_B = state.wanted_B <= 0
    may_close_B1 = (may_end_B & (any_count_B | (state.written_B + 1 >= state.wanted_B)))[:, None]
    may_go_on_B1 = (may_end_B & (any_count_B | (state.written_B + 1 < state.wanted_B)))[:, None]
    # Starting the next gene completes the current one, which then no longer counts as
    # unused below the first node of its own path.
    gene_B = jnp.maximum(tables.gene_of_N[state.node_B], 0)
    own_first_node_B1 = jnp.where(may_end_B, tables.path_GD[gene_B, 0], -1)[:, None]
    unused_root_BV = state.unused_below_BN[:, jnp.maximum(root_child_V, 0)] - (
        root_child_V[None, :] == own_first_node_B1
    )
    open_root_BV = (root_child_V >= 0)[None, :] & (unused_root_BV > 0)
    tokens_BF, _, open_BF = _children(tables, state)
    rows_BF = jnp.broadcast_to(jnp.arange(B)[:, None], tokens_BF.shape)
    into_child_BV = (
        jnp.zeros((B, V), bool).at[rows_BF, jnp.where(open_BF, tokens_BF, V)].set(True, mode="drop")
    )
    at_root_B1 = (state.node_B == ROOT)[:, None]
    allowed_BV = jnp.where(
        at_root_B1,
        open_root_BV,
        into_child_BV
        | (may_go_on_B1 & open_root_BV)
        | (may_close_B1 & tables.terminator_V[None, :]),
    )
    # A row with nowhere left to go (every gene used, however many it wants) may only
    # close the sentence.
    stuck_B1 = ~jnp.any(allowed_BV, axis=1, keepdims=True)
    allowed_BV = allowed_BV | (stuck_B1 & tables.terminator_V[None, :])
    only_eos_BV = jnp.arange(V)[None, :] == tables.eos_id
    return jnp.where(state.closed_B[:, None], only_eos_BV, allowed_BV)


def transition(
    tables: ConstraintTables, state: ConstraintState, token_B: jax.Array, active_B: jax.Array
) -> ConstraintState:
    """The rows' states after writing ``token_B``; rows where ``active_B`` is False keep
    theirs. Tokens must be allowed ones (see :func:`allowed_tokens`)."""
    B = state.node_B.shape[0]
    tokens_BF, nodes_BF, open_BF = _children(tables, state)
    match_BF = open_BF & (tokens_BF == token_B[:, None])
    into_child_B = jnp.any(match_BF, axis=1)
    child_B = jnp.max(jnp.where(match_BF, nodes_BF, -1), axis=1)
    at_root_B = state.node_B == ROOT
    closes_B = tables.terminator_V[token_B] & ~into_child_B
    completes_B = active_B & ~at_root_B & ~into_child_B & _completes_unused_gene(tables, state)
    root_child_B = jnp.maximum(tables.root_child_V[token_B], 0)
    next_node_B = jnp.where(into_child_B, child_B, jnp.where(closes_B, state.node_B, root_child_B))

    gene_B = jnp.maximum(tables.gene_of_N[state.node_B], 0)
    rows_B = jnp.arange(B)
    used_BG = state.used_BG.at[rows_B, gene_B].set(state.used_BG[rows_B, gene_B] | completes_B)
    n_nodes = tables.genes_below_N.shape[0]
    path_BD = jnp.where(completes_B[:, None], tables.path_GD[gene_B], n_nodes)
    unused_below_BN = state.unused_below_BN.at[rows_B[:, None], path_BD].add(-1, mode="drop")
    return ConstraintState(
        node_B=jnp.where(active_B, next_node_B, state.node_B),
        used_BG=used_BG,
        unused_below_BN=unused_below_BN,
        closed_B=state.closed_B | (active_B & closes_B),
        written_B=state.written_B + completes_B.astype(jnp.int32),
        wanted_B=state.wanted_B,
    )
