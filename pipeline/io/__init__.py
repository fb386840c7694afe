"""Input and output of the batch jobs: shards (local or s3://), image decoding and encoding, results Parquet.

One module per stage, named after what flows through it:

    shards.py    list shards, stream their members (shard, key, ext, bytes), write output shards atomically
    decode.py    encoded bytes -> uint8 RGB at native size (+ alpha kept aside), with a pixel limit from the header
    encode.py    uint8 RGB (+ alpha) -> PNG (fast), WebP-lossless or JPEG bytes
    results.py   the per-shard results Parquet, written atomically, read back for resuming (its footer = the commit)
"""
