"""Learned parts of UniToCom: tokenizers, de-tokenizers, GenIB objectives, adaptive coding-modulation."""
