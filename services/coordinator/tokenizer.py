"""The model's tokenizer, when the coordinator can read one: text prompts in, text pieces out.

Pieces are made incrementally (the offsets scheme of vLLM and TGI): each token's piece is the
text its arrival adds to a short decoded window, and a piece is held back while the window ends
in an incomplete UTF-8 sequence, so a character split over tokens comes out whole, on the token
that completes it.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
_INCOMPLETE = "\ufffd"


def load_tokenizer(directory: str):
    """A transformers tokenizer from `directory`, or None when it holds no tokenizer files."""
    if not directory or not any((Path(directory) / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    log.info("tokenizer loaded from %s", directory)
    return tokenizer


def encode(tokenizer, text: str) -> list[int]:
    """No special tokens are added: the caller puts a BOS in the text if the model wants one."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class IncrementalDetokenizer:
    def __init__(self, tokenizer, prompt: list[int]):
        self._tokenizer = tokenizer
        self._ids = list(prompt[-6:])  # some context, so the first piece gets its leading space right
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def add(self, token_id: int) -> str:
        self._ids.append(token_id)
        decode = self._tokenizer.decode
        prefix = decode(self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=False)
        text = decode(self._ids[self._prefix_offset :], skip_special_tokens=False)
        if len(text) <= len(prefix) or text.endswith(_INCOMPLETE):
            return ""
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return text[len(prefix) :]
