"""SigmaPercentMap: sigma -> sampling percent between the tabulated points, against an exact inverse."""

import math

import pytest

from samplers.schedules import SigmaPercentMap


def test_interpolates_between_table_points():
    # log-linear percent_to_sigma: the map's log-sigma interpolation is then exact everywhere
    def p2s(p):
        return math.exp(3.0 - 7.0 * p)

    m = SigmaPercentMap(p2s, n=11)  # table points every 0.1
    for pct in (0.0, 0.03, 0.137, 0.5, 0.55, 0.951, 1.0):
        assert m.percent(p2s(pct)) == pytest.approx(pct, abs=1e-9)
    assert m.percent(1e6) == 0.0 and m.percent(1e-9) == 1.0
