"""Prompts (the MSL paper's Table 1 templates in the Alpaca layout) and tokenised training examples.

The prompt ends with ``### Response:\\n``; the response is the quoted title
followed by EOS. Prompt and response are tokenised *separately* and
concatenated, so the response ids are exactly the ids the trie over titles
holds (:meth:`llmrec.llm.trie.ItemTrie.encode`).
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = ("Below is an instruction that describes a task, paired with an input that provides further context. "
          "Write a response that appropriately completes the request.\n\n")

# domain -> (instruction, input lead); "toys" is Table 1 verbatim, the others follow it. A dataset's meta.json
# "domain" picks one (TrainConfig.domain / --domain overrides it); a new domain is one more entry here (and in
# llmrec.data.prepare.DOMAIN_CHOICES, which `prepare --domain` accepts).
TEMPLATES = {
    "toys": ("Given a list of toys the user has played before, please recommend a new toy that the user likes to the user.",
             "The user has played the following toys before: "),
    "books": ("Given a list of books the user has read before, please recommend a new book that the user likes to the user.",
              "The user has read the following books before: "),
    "movies": ("Given a list of movies the user has watched before, please recommend a new movie that the user likes to "
               "the user.",
               "The user has watched the following movies before: "),
    "generic": ("Given a list of items the user has interacted with before, please recommend a new item that the user "
                "likes to the user.",
                "The user has interacted with the following items before: "),
}

DEFAULT_MAX_HISTORY = 10


def quote(title: str) -> str:
    return f'"{title}"'


def check_domain(domain: str, where: str = "") -> str:
    """``domain`` if it names a template, else a ValueError listing the templates (``where``: its source)."""
    if domain not in TEMPLATES:
        raise ValueError(f"unknown prompt domain {domain!r}{where}; the templates are {', '.join(sorted(TEMPLATES))} "
                         "(set the dataset's meta.json \"domain\", or pass --domain / TrainConfig.domain)")
    return domain


def build_prompt(history_titles: list[str], domain: str = "generic", max_history: int = DEFAULT_MAX_HISTORY) -> str:
    """The Alpaca-style prompt for a history (oldest first), keeping the last ``max_history`` titles."""
    check_domain(domain)
    if not history_titles:
        raise ValueError("a prompt needs a history of at least 1 item")
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    instruction, lead = TEMPLATES[domain]
    listed = ", ".join(quote(t) for t in history_titles[-max_history:])
    return f"{HEADER}### Instruction:\n{instruction}\n\n### Input:\n{lead}{listed}\n\n### Response:\n"


@dataclass
class Example:
    input_ids: list[int]  # prompt + response
    prompt_len: int  # response starts here
    target: int  # item id


class PromptEncoder:
    """Turns dataset windows into token ids: ``encode(history, target) -> Example``.

    Response ids come from ``trie.encode`` so that training, the trie and decoding
    agree to the token.
    """

    def __init__(self, tokenizer, trie, items: dict[int, str], domain: str = "generic",
                 max_history: int = DEFAULT_MAX_HISTORY):
        self.tokenizer, self.trie, self.items = tokenizer, trie, items
        self.domain, self.max_history = check_domain(domain), max_history

    def prompt_ids(self, history: list[int]) -> list[int]:
        text = build_prompt([self.items[i] for i in history], self.domain, self.max_history)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, history: list[int], target: int) -> Example:
        p = self.prompt_ids(history)
        return Example(p + self.trie.encode(self.items[target]), len(p), int(target))

    def encode_frame(self, df) -> list[Example]:
        return [self.encode(list(h), t) for h, t in zip(df["history"], df["target"])]
