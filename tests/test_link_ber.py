"""Coded link behaviour (LDPC waterfall, Turbo), the BER simulator's rows and plots, and the `link` CLI."""
from __future__ import annotations

import argparse
import json

import pytest

from unitocom.link.ber import capacity_rows, plot_ber, simulate_ber
from unitocom.link.snr import snr_interval, snr_points
from unitocom.link.cli import add_subparser
from unitocom.link.theory import ber_awgn

# 5G LDPC, k = 1024 (incl. CRC24A), rate 1/2, 16-QAM, app demapper, 20 BP iterations, AWGN. Measured
# (200 blocks/point): BLER 1.0 at 5.0 dB, 0.59 at 6.0, 0.09 at 6.5, 0 at 7.0 dB Es/N0. Threshold for BLER < 1e-2:
# Es/N0 = 7.0 dB, i.e. Eb/N0 = 4.0 dB.
LDPC_QAM16_R05_THRESHOLD_DB = 7.0


def test_ldpc_waterfall():
    (below,) = simulate_ber("qam16", "awgn", [5.0], code="ldpc", rate=0.5, bits=100 * 1000, seed=3, progress=False)
    (above,) = simulate_ber("qam16", "awgn", [LDPC_QAM16_R05_THRESHOLD_DB + 0.5], code="ldpc", rate=0.5,
                            bits=400 * 1000, seed=3, progress=False)
    assert below["blocks"] == 100 and above["blocks"] == 400
    assert below["bler"] > 0.9
    assert above["block_errors"] <= 1  # BLER < 1e-2 with ~95 % confidence from 400 blocks
    # coding gain: far below the uncoded BER at the same Es/N0
    assert above["ber"] < 1e-3 < ber_awgn("qam16", LDPC_QAM16_R05_THRESHOLD_DB + 0.5)


def test_turbo_decodes_at_high_snr_and_fails_at_low():
    low, high = simulate_ber("qam16", "awgn", [0.0, 9.0], code="turbo", rate=0.5, bits=100 * 232, seed=4,
                             progress=False)
    assert high["block_errors"] == 0 and high["bit_errors"] == 0 and high["blocks"] == 100
    assert low["bler"] > 0.9


def test_coded_rayleigh_fast_fading():
    (row,) = simulate_ber("qpsk", "rayleigh", [12.0], code="ldpc", rate=0.5, bits=50 * 1000, seed=5, progress=False)
    assert row["block_errors"] == 0


def test_rows_shape_and_reproducibility():
    a = simulate_ber("qpsk", "awgn", [2.0, 4.0], bits=10_000, seed=7, progress=False)
    b = simulate_ber("qpsk", "awgn", [2.0, 4.0], bits=10_000, seed=7, progress=False)
    assert a == b
    assert set(a[0]) >= {"snr_db", "ber", "bler", "ber_theory", "bits", "blocks"}
    assert a[0]["bits"] == 10_000 and a[0]["ber"] > a[1]["ber"]
    with pytest.raises(ValueError, match="channel.model"):
        simulate_ber("qpsk", "rician-ish", [1.0], progress=False)


def test_snr_points_and_interval():
    assert snr_points("0:10:2.5") == [0.0, 2.5, 5.0, 7.5, 10.0]
    assert snr_points("-5:0:5") == [-5.0, 0.0]
    assert snr_points("1,3") == [1.0, 3.0] and snr_points("4") == [4.0]
    for bad in ("1:2", "3:1:1", "0:1:0", "a:b:c", "", "nan"):
        with pytest.raises(ValueError):
            snr_points(bad)
    assert snr_interval("-10:25") == (-10.0, 25.0)
    for bad in ("5", "1:2:3", "3:1", "a:b", "0:inf"):
        with pytest.raises(ValueError):
            snr_interval(bad)


def test_plots(tmp_path):
    rows = simulate_ber("qpsk", "rayleigh", [0.0, 10.0], bits=5000, progress=False)
    plot_ber(rows, str(tmp_path / "ber.png"), "t")
    assert (tmp_path / "ber.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capacity_rows([0.0])[0]["awgn_bits"] == pytest.approx(1.0)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="unitocom")
    add_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_ber_json_and_table(capsys, tmp_path):
    assert _cli(["link", "ber", "--modulation", "bpsk", "--channel", "awgn", "--snr-db", "0:4:2", "--bits", "20000",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["snr_db"] for r in rows] == [0.0, 2.0, 4.0] and all(r["ber_theory"] for r in rows)
    png = tmp_path / "b.png"
    assert _cli(["link", "ber", "--modulation", "qam16", "--code", "ldpc", "--rate", "0.5", "--snr-db", "8",
                 "--bits", "3000", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "bler" in out and png.exists()


def test_cli_capacity_and_errors(capsys):
    assert _cli(["link", "capacity", "--snr-db=-10:10:10", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and rows[1]["awgn_bits"] == pytest.approx(1.0)
    with pytest.raises(SystemExit):
        _cli(["link", "ber", "--snr-db", "5:1:1"])
    with pytest.raises(SystemExit):
        _cli(["link", "ber", "--modulation", "qam256", "--snr-db", "1"])
    assert _cli(["link", "ber", "--code", "ldpc", "--rate", "0.99", "--snr-db", "1"]) == 2
    assert "LDPC rate" in capsys.readouterr().err
