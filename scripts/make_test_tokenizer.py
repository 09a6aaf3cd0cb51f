"""Write the tiny Gemma-style tokenizer to tests/fixtures/tiny_tokenizer (run from the repo root).

The tiny model trains the same tokenizer in-process; the committed copy lets tests check that it
reloads offline through transformers and that training is reproducible.
"""

import sys
from pathlib import Path

from sae_hacking.llm.tokenizer import train_tiny_tokenizer


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tests/fixtures/tiny_tokenizer")
    target.mkdir(parents=True, exist_ok=True)
    train_tiny_tokenizer().save_pretrained(str(target))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
