"""Turning a fine-tuned LLM into a ranked list of catalogue items, three ways.

* :mod:`.beam`: constrained beam search over the trie (the MSL paper's inference),
  with :mod:`.attention` (each prompt's K/V shared by its beams) and :mod:`.prefill`
  (many users' prompts run at once, their shared template once);
* :mod:`.exact`: exact full-catalogue ranking by P_valid (tree attention over the trie);
* :mod:`.ground`: free generation, then the nearest titles (BIGRec's grounding).
"""

from .attention import SharedPrompt, shared_prompt_attention
from .beam import ENGINES, TrieLogitsProcessor, beam_search, beam_search_batch, rank_from_beams
from .common import SCORE_MODES, DecodeError
from .exact import ExactStats, TriePlan, exact_ranks, score_all_items, score_all_items_batch, score_items, trie_plan
from .ground import Grounding, TitleIndex, generate_texts, ground, ground_batch, title_index
from .prefill import PromptKV
