"""Bounds that keep one highlight request from holding the model for long or filling memory.

Apart from the pydantic schemas (slow to build), so the client checks its flags at once.
"""

MAX_PROMPT_CHARS = 8_000
MAX_LATENTS = 16
MAX_TOP_K = 50
MAX_NAME_CHARS = 200
MAX_LATENT_ID = 2**31 - 1
