"""Ingest: raw Hyperquack archives to labelled, tokenized rows in a dataset folder.

``sources`` (stream lines from archives), ``hyperquack`` (one line to tries, v1 and v2),
``signatures`` (Censored Planet's blockpage files, matched), ``outcome`` (what happened to a try),
``geo`` (country of a v1 vantage point), ``tokens`` (normalisation, BPE, the token layout),
``flatten`` (the stage: label, tokenize, store) and ``fanout`` (how chunks run on workers).
"""
