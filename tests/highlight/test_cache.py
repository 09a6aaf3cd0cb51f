import pytest

from sae_hacking.highlight.cache import LruCache, SaeKey


class CountingLoader:
    def __init__(self) -> None:
        self.loads: list[SaeKey] = []

    def __call__(self, key: SaeKey) -> str:
        if key[0] == "bad":
            raise KeyError(key)
        self.loads.append(key)
        return "/".join(key)


def test_cache_loads_once_and_evicts_the_least_recently_used() -> None:
    loader = CountingLoader()
    cache = LruCache(2, loader)
    a, b, c = ("r", "a"), ("r", "b"), ("r", "c")
    assert [cache.get(k) for k in (a, b, a, a, c, a, b)] == [
        "r/a",
        "r/b",
        "r/a",
        "r/a",
        "r/c",
        "r/a",
        "r/b",
    ]
    # a stayed (used just before c arrived, which pushed b out); b came back and pushed c out.
    assert loader.loads == [a, b, c, b]
    assert cache.keys() == [a, b]


def test_a_failed_load_caches_nothing() -> None:
    loader = CountingLoader()
    cache = LruCache(1, loader)
    with pytest.raises(KeyError):
        cache.get(("bad", "x"))
    assert cache.keys() == []
    assert cache.get(("r", "a")) == "r/a"


def test_capacity_must_hold_at_least_one_sae() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LruCache(0, CountingLoader())
