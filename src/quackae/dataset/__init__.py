"""The dataset store: Parquet shards, a manifest, the token cache, embeddings beside them.

Every later stage reads rows through here; ingest writes them through here.
"""
