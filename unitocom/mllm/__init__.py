"""The base-station MLLM: Llama backbone over received tokens, LM head and next-token diffusion head."""
