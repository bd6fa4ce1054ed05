"""Storage and execution the stages stand on: atomic writes, URIs and locks, the Ray cluster.

``atomic`` (temp-then-rename writes, directory locks), ``storage`` (local paths and object-store
URIs behind one ``Location``), ``locks`` (the writer lock of a dataset or embeddings folder, also
on object stores), ``cluster`` (joining or starting Ray). Imports nothing else of quackae.
"""
