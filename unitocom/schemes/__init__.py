"""Per-scheme payload <-> symbol processing (traditional now; learned schemes with the tokenizers)."""
