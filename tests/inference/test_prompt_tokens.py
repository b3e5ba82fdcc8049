"""Prompts held to the trained length: refused by name, or cut at their end."""

import numpy as np
import pytest

from c2s_jax.errors import InputError
from c2s_jax.inference.prompt_tokens import fit_prompts


def test_prompts_that_fit_are_kept_and_long_ones_refused_or_cut():
    short, long = np.arange(5), np.arange(12)
    assert [p.tolist() for p in fit_prompts([short], 8, False)] == [short.tolist()]
    assert fit_prompts([long], None, False)[0] is long  # no limit known
    with pytest.raises(InputError, match=r"request 2 has 12 prompt tokens \+ 3 of its answer"):
        fit_prompts([short, long], 10, False, reserved=[3, 3])
    cut = fit_prompts([short, long], 10, True, reserved=[3, 3])
    assert cut[0].tolist() == short.tolist() and cut[1].tolist() == list(range(7))
    with pytest.raises(InputError, match="shorten it$"):  # the answer alone fills the limit
        fit_prompts([short], 4, True, reserved=[4])
