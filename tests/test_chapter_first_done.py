"""A chapter with no finished run says how to compute one instead of failing on an index."""

from __future__ import annotations

import pytest

from glitchlib import report


def test_first_done_of_an_empty_store_names_what_to_do(tmp_path):
    chapter = report.chapter("tiny", results_dir=tmp_path / "results", glitch="class-based", compute=False,
                             progress=False)
    assert chapter.done == []
    with pytest.raises(ValueError, match="compute_missing=True.*glitchlib grid --profile tiny"):
        chapter.first_done()
