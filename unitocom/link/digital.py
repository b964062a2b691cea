"""The traditional bit chain of the letter's baseline: bytes -> CRC -> channel code -> Gray QAM, and back.

Transmitter: the payload's bits (MSB first per byte) are cut into blocks of k - crc_length information bits, the
last one zero-padded; each block gets a CRC (so k counts the CRC), is channel coded to n bits, and all codewords
are concatenated, zero-padded to a whole number of symbols and mapped. Receiver: equalise with the CSI it is
given, demap to LLRs with the per-symbol effective noise, decode all blocks in one batched Sionna call, check
each CRC. The payload length is not inferred from the symbols: the receiver learns `num_bytes` from a reliable
control header (as the downlink/control path of the testbed is), so padding is never mistaken for data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unitocom.link.codes import CRC, CRC_LENGTHS, make_code
from unitocom.link.equalize import equalize
from unitocom.link.modulation import Modulator, _check_demapper


@dataclass
class DecodeResult:
    payload: bytes  # exactly num_bytes long; best-effort bits even where blocks failed
    blocks: int
    block_errors: int  # blocks whose CRC failed

    @property
    def ok(self) -> bool:
        return self.block_errors == 0


class DigitalLink:
    """One configuration of the digital chain; build once, call encode/decode many times (Sionna objects cached).

    code: 'ldpc' (5G NR, rate 1/5..0.95), 'turbo' (rate-1/3 LTE Turbo punctured to any rate in [1/3, 0.9]; see
    `codes.TurboCode`), or 'none' (rate ignored). k: bits per block *including* the CRC.
    iterations: LDPC belief-propagation iterations, or Turbo iterations.
    crc: a 3GPP CRC name (CRC24A default); every block carries one so block failures are detected.
    """

    def __init__(self, code: str = "ldpc", rate: float = 0.5, modulation: str = "qam16", k: int = 1024,
                 iterations: int = 20, crc: str = "CRC24A"):
        if crc not in CRC_LENGTHS:
            raise ValueError(f"crc must be one of {list(CRC_LENGTHS)}, got {crc!r}")
        if not isinstance(k, (int, np.integer)) or k <= CRC_LENGTHS[crc]:
            raise ValueError(f"k must be an integer > {CRC_LENGTHS[crc]} (the CRC length), got {k!r}")
        self.modulator = Modulator(modulation)
        self.modulation = modulation
        self.code_name = code
        self.code = make_code(code, int(k), rate, iterations, self.modulator.bits_per_symbol)
        self.crc = CRC(crc)
        self.k = int(k)
        self.n = self.code.n
        self.info_bits = self.k - self.crc.length  # payload bits per block
        self.rate = self.code.rate

    def num_blocks(self, num_bytes: int) -> int:
        return math.ceil(8 * num_bytes / self.info_bits)

    def num_symbols(self, num_bytes: int) -> int:
        """Symbols that `encode` produces for a payload of num_bytes bytes."""
        if num_bytes < 0:
            raise ValueError(f"num_bytes must be >= 0, got {num_bytes}")
        return math.ceil(self.num_blocks(num_bytes) * self.n / self.modulator.bits_per_symbol)

    def encode(self, payload: bytes) -> np.ndarray:
        """bytes -> complex64 symbols [num_symbols(len(payload))]; mean |z|^2 over the constellation is POWER_P."""
        payload = bytes(payload)
        blocks = self.num_blocks(len(payload))
        bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
        bits = np.concatenate([bits, np.zeros(blocks * self.info_bits - bits.size, np.uint8)])
        cw = self.code.encode(self.crc.attach(bits.reshape(blocks, self.info_bits)))
        stream = cw.reshape(-1)
        m = self.modulator.bits_per_symbol
        stream = np.concatenate([stream, np.zeros((-stream.size) % m, np.uint8)])
        return self.modulator.map(stream)

    def decode(self, y: np.ndarray, h: np.ndarray, noise_var: float, num_bytes: int,
               equalizer: str = "mmse", demapper: str = "app", est_error_var: float = 0.0) -> DecodeResult:
        """y complex [N] received, h complex [N] the CSI the receiver has (true or estimated gain), noise_var N0,
        num_bytes from the control header -> DecodeResult. N must equal num_symbols(num_bytes).
        equalizer 'zf' | 'mmse' (unbiased; equal for one tap), demapper 'app' (exact) | 'maxlog'.
        est_error_var: variance of the CSI error, added to the noise the demapper assumes (0 = trust h).
        The two halves, `demodulate` then `decode_llrs`, are public so that a receiver can time them apart."""
        return self.decode_llrs(self.demodulate(y, h, noise_var, num_bytes, equalizer, demapper, est_error_var),
                                num_bytes)

    def demodulate(self, y: np.ndarray, h: np.ndarray, noise_var: float, num_bytes: int,
                   equalizer: str = "mmse", demapper: str = "app", est_error_var: float = 0.0) -> np.ndarray:
        """Equalise and demap (arguments as `decode`) -> LLRs [blocks, n] of the codewords, padding dropped."""
        _check_demapper(demapper)
        expected = self.num_symbols(num_bytes)
        y = np.asarray(y).reshape(-1)
        if y.size != expected:
            raise ValueError(f"y has {y.size} symbols but {num_bytes} bytes need {expected}")
        blocks = self.num_blocks(num_bytes)
        if blocks == 0:
            return np.zeros((0, self.n), np.float32)
        z, nv = equalize(y, h, noise_var, equalizer, est_error_var)
        return self.modulator.demap(z, nv, demapper)[: blocks * self.n].reshape(blocks, self.n)

    def decode_llrs_many(self, llrs: list[np.ndarray], num_bytes: list[int]) -> list[DecodeResult]:
        """decode_llrs of several streams (LLRs [blocks_i, n] each) with one decoder call over all their blocks:
        the code blocks of concurrent requests decoded as one batch. Each result is what decode_llrs gives."""
        sizes = [int(x.shape[0]) for x in llrs]
        if sum(sizes) == 0:
            return [self.decode_llrs(x, b) for x, b in zip(llrs, num_bytes)]
        info, ok = self.crc.check(self.code.decode(np.concatenate([x for x in llrs if x.shape[0]])))
        out, start = [], 0
        for n, nbytes in zip(sizes, num_bytes):
            if n == 0:
                out.append(DecodeResult(payload=b"", blocks=0, block_errors=0))
                continue
            bits = info[start:start + n, : self.info_bits].reshape(-1)[: 8 * nbytes]
            out.append(DecodeResult(payload=np.packbits(bits).tobytes(), blocks=n,
                                    block_errors=int((~ok[start:start + n]).sum())))
            start += n
        return out

    def decode_llrs(self, llr: np.ndarray, num_bytes: int) -> DecodeResult:
        """Channel-decode LLRs [blocks, n] from `demodulate` and check each block's CRC -> DecodeResult."""
        blocks = llr.shape[0]
        if blocks == 0:
            return DecodeResult(payload=b"", blocks=0, block_errors=0)
        info, ok = self.crc.check(self.code.decode(llr))
        bits = info[:, : self.info_bits].reshape(-1)[: 8 * num_bytes]
        return DecodeResult(payload=np.packbits(bits).tobytes(), blocks=blocks, block_errors=int((~ok).sum()))
