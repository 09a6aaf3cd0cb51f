"""Prompt highlighting: how an SAE's latents fire on a typed prompt, over HTTP, in a page and in files."""
