import pytest

from llmrec.llm.prompts import PromptEncoder, build_prompt


def test_prompt_layout():
    p = build_prompt(["A", "B", "C"], "toys", max_history=2)
    assert p.endswith("### Response:\n")
    assert "please recommend a new toy" in p
    assert 'played the following toys before: "B", "C"\n' in p and '"A"' not in p
    with pytest.raises(ValueError, match="at least 1 item"):
        build_prompt([], "toys")
    with pytest.raises(ValueError, match="unknown prompt domain"):
        build_prompt(["A"], "cars")


@pytest.mark.parametrize("which", ["toy", "books"])
def test_response_ids_round_trip_for_every_item(which, request, tok):
    ds = request.getfixturevalue(which)
    trie = request.getfixturevalue(f"{which}_trie")
    for iid, title in ds.items.items():
        ids = trie.encode(title)
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids[:-1]) == f'"{title}"'
        assert iid in trie.items_for(ids)


def test_example_concatenates_prompt_and_trie_ids(toy, toy_trie, tok):
    enc = PromptEncoder(tok, toy_trie, toy.items, toy.domain, max_history=10)
    row = toy.train.iloc[0]
    ex = enc.encode(list(row.history), row.target)
    assert ex.input_ids[ex.prompt_len:] == toy_trie.encode(toy.items[row.target])
    assert tok.decode(ex.input_ids[:ex.prompt_len]).endswith("### Response:\n")


def test_movies_template_and_prepare_offers_every_template():
    from llmrec.data.prepare import DOMAIN_CHOICES
    from llmrec.llm.prompts import TEMPLATES

    assert sorted(DOMAIN_CHOICES) == sorted(TEMPLATES)  # `prepare --domain` writes only names the prompts know
    p = build_prompt(["Heat (1995)", "Ronin (1998)"], "movies")
    assert "please recommend a new movie that the user likes" in p
    assert 'The user has watched the following movies before: "Heat (1995)", "Ronin (1998)"\n' in p
    with pytest.raises(ValueError, match="the templates are books, generic, movies, toys"):
        PromptEncoder(None, None, {}, "cars")
