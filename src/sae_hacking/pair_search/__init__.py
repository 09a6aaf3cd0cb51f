"""Pair search: latents that never co-occur yet move the reader alike, as files people open."""
