"""The batch jobs: ``embed`` and ``extract`` over image shards, and their ``benchmark``.

batch.py      the per-batch work (decode, preprocess, embed, compose, verify, encode): pure functions
resample.py   full-size images <-> the network size: the area average down, its pseudo-inverse (or bilinear) up
common.py     what both jobs share: configuration fingerprint, shard planning, member -> sample rows, manifest
embed.py      the embed job (covers + secrets -> stego shards)
extract.py    the extract job (stego shards -> revealed secrets)
runners.py    the local runner (overlapping stages in threads); a distributed runner reuses batch.py as is
benchmark.py  images/s per stage and end to end, peak memory
cli.py        the click commands
"""
