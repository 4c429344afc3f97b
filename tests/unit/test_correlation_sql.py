"""``sql.batches``: how SQLite's compound statements are cut (a handful of texts, every item once)."""

from __future__ import annotations

from itertools import accumulate

from hypothesis import given
from hypothesis import strategies as st

from failure_aware.correlation.sql import batches


@given(st.integers(0, 5_000), st.sampled_from([1, 8, 16, 256]))
def test_batches_cover_every_item_once_in_a_few_fixed_sizes(total: int, size: int) -> None:
    cut = list(batches(total, size))
    assert [offset for offset, _ in cut] == [0, *accumulate(count for _, count in cut)][: len(cut)]
    assert sum(count for _, count in cut) == total
    allowed = {size >> shift for shift in range(size.bit_length())}  # size and the powers of two below
    assert {count for _, count in cut} <= allowed
    assert len([count for _, count in cut if count < size]) <= size.bit_length() - 1  # one of each at most


def test_batches_take_full_statements_first_and_the_rest_by_powers_of_two() -> None:
    assert list(batches(0, 16)) == []
    assert list(batches(45, 16)) == [(0, 16), (16, 16), (32, 8), (40, 4), (44, 1)]
