"""Ingest settings the command line shows in ``--help``, kept free of heavy imports.

``quackae flatten --help`` reads them without loading tokenizers, numpy or pyarrow.
"""

DEFAULT_VOCAB = 8192  # BPE vocabulary size of a dataset's tokenizer
DEFAULT_MAX_TOKENS = 512  # tokens kept per sequence (the head)
TOKENIZER_SAMPLE = 20_000  # tries of text the BPE model is trained on at a dataset's creation

#: Fewest tries a new dataset's tokenizer is trained on. Measured with
#: ``benchmarks/tokenizer_minimum.py`` (generated http/https/echo/discard tries, vocabulary
#: 8192, the same held-out tries): trained on no text the p99 token length is 912 and 6.0% of
#: tries exceed the 512-token cut; on 100 tries p99 is 485 and 0.6% are cut; on the full
#: sample (15,432) p99 is 299 and none are. Below 100 a tokenizer splits pages into so many
#: tokens that their endings are lost, and every later append reuses it.
MIN_TOKENIZER_TEXTS = 100
#: Tries from which a tokenizer comes within a few percent of the full sample's lengths
#: (1,000 tries: p90 153 and p99 312 against 151 and 299); below it `flatten -v` says so.
GOOD_TOKENIZER_TEXTS = 1000
