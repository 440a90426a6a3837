"""A profile without block measurements (a time budget reached first) is a clear error, not a numpy traceback."""

import shutil
import sqlite3

import pytest

from hwnas.errors import HwnasError
from hwnas.predictors import LutPredictor
from hwnas.profile import Profile


def test_lut_on_a_profile_without_blocks_says_so(tiny_profile, tmp_path):
    d = tmp_path / "p"
    shutil.copytree(tiny_profile[0], d, ignore=shutil.ignore_patterns("predictors"))
    con = sqlite3.connect(d / "profile.sqlite")
    with con:
        con.execute("DELETE FROM measurements WHERE kind = 'block'")
    con.close()
    with pytest.raises(HwnasError, match="no block measurements"):
        LutPredictor().fit(Profile.load(d))
