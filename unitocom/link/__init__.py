"""The physical layer: modulation, channel codes, the channel of eq. (2), equalisation, the digital chain,
closed-form theory and BER simulation. numpy in, numpy out; Sionna is imported lazily by the parts that use it.

    from unitocom.link import ChannelSpec, FadingChannel, DigitalLink
"""
from unitocom.link.channel import ChannelOutput, ChannelSpec, FadingChannel
from unitocom.link.digital import DecodeResult, DigitalLink
from unitocom.link.equalize import equalize
from unitocom.link.modulation import MODULATIONS, Modulator, bits_per_symbol, constellation

__all__ = [
    "ChannelOutput", "ChannelSpec", "FadingChannel", "DecodeResult", "DigitalLink", "equalize",
    "MODULATIONS", "Modulator", "bits_per_symbol", "constellation",
]
