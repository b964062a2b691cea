"""UniToCom: token communication testbed library (tokenizers, links, channel, MLLM, metrics)."""
