"""LlamaIndex components on the semcache engine."""
