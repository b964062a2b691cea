"""The three stages of the link as gRPC-free cores: transmitter, channel, base station."""
