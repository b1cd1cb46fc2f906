"""Window presets, 'W,L' parsing and the HU → 8-bit mapping."""

from __future__ import annotations

import numpy as np
import pytest

from app.errors import InvalidInput
from app.imaging.window import PRESETS, Window, parse_window, to_uint8


def test_presets_match_the_interface_contract():
    assert {n: (w.width, w.level) for n, w in PRESETS.items()} == {
        "liver": (150, 30),
        "abdomen": (400, 50),
        "bone": (1800, 400),
        "lung": (1500, -600),
        "mediastinum": (350, 50),
    }


@pytest.mark.parametrize(
    "spec, width, level",
    [
        ("liver", 150, 30),
        ("LUNG", 1500, -600),
        ("400,40", 400, 40),
        (" 80 , -20 ", 80, -20),
        ("350.5,45.5", 350.5, 45.5),
    ],
)
def test_parse_window_accepts_presets_and_pairs(spec, width, level):
    w = parse_window(spec)
    assert (w.width, w.level) == (width, level)


@pytest.mark.parametrize("spec", ["", "brain", "400", "0,40", "-10,40", "a,b", "400;40", "1e9,0"])
def test_bad_window_is_invalid_input_listing_the_presets(spec):
    with pytest.raises(InvalidInput) as err:
        parse_window(spec)
    assert f"bad window {spec.strip()!r}" in err.value.detail
    assert "liver (150,30)" in err.value.detail and "W,L" in err.value.detail
    assert err.value.status_code == 422


def test_to_uint8_maps_low_to_0_high_to_255_and_clips():
    w = Window("liver", 150, 30)  # -45 .. 105 HU
    hu = np.array([[-1024, -45, 30, 105, 3000]], dtype=np.int16)
    assert to_uint8(hu, w).tolist() == [[0, 0, 128, 255, 255]]


def test_int16_table_agrees_with_the_float_formula_for_every_hu():
    hu = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16).reshape(256, 256)
    for w in (*PRESETS.values(), parse_window("1,0"), parse_window("4000,1000")):
        fast, exact = to_uint8(hu, w), to_uint8(hu.astype(np.float32), w)
        assert fast.dtype == np.uint8 and fast.shape == hu.shape
        assert np.array_equal(fast, exact), w


def test_to_uint8_keeps_the_shape_of_strided_views():
    hu = np.arange(64 * 48, dtype=np.int16).reshape(64, 48)[::-1, ::2].T
    assert to_uint8(hu, PRESETS["bone"]).shape == hu.shape
