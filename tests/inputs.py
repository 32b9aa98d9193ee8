"""The inputs every round-trip test goes through: what users actually have on disk."""

import random

_rng = random.Random(1234)

INPUTS = {
    "empty": b"",
    "one_byte": b"x",
    "one_newline": b"\n",
    "ascii": b"The quick brown fox jumps over the lazy dog.\n",
    "crlf": b"line one\r\nline two\r\n\r\nlast line without newline",
    "lone_cr": b"old mac\rline endings\r",
    "emoji_multilingual": "Ünïcödé 🎉👩‍👩‍👧 日本語 Ελληνικά русский עברית 😀\n".encode(),
    "non_utf8_latin1": "café naïve façade".encode("latin-1"),
    "invalid_sequences": b"ok \xc3\x28 \xa0\xa1 \xe2\x28\xa1 \xf0\x90\x28\xbc \xed\xa0\x80 end\xff",
    "nul_and_controls": b"a\x00b\x01\x02\x1b[31mred\x1b[0m\x7f\n",
    "bom": b"\xef\xbb\xbfwith a byte order mark\n",
    "whitespace": b"   \t\t  \n\n\n    trailing   \n\x0b\x0c",
    "special_token_text": b"<|endoftext|> looks like a special token <|im_start|>",
    "random_binary": bytes(_rng.randrange(256) for _ in range(300)),
    "all_bytes": bytes(range(256)),
}
