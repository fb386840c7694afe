"""Input and output of the batch jobs: shards (local or s3://), image decoding and encoding, results Parquet.

One module per stage, named after what flows through it:

    filesystem.py  local paths and s3:// URLs as filesystems, transient errors retried
    listing.py     list shards (a folder or prefix of *.tar, or a folder of images as one shard)
    tar_reader.py  stream a shard's members (shard, key, ext, bytes), each checked
    tar_writer.py  write output shards and small files atomically
    shards.py      the public names of the four above, as one import
    decode.py      encoded bytes -> uint8 RGB at native size (+ alpha kept aside), with a pixel limit from the header
    encode.py      uint8 RGB (+ alpha) -> PNG (fast), WebP-lossless or JPEG bytes
    results.py     the per-shard results Parquet, written atomically, read back for resuming (its footer = the commit)
    photos.py      a photo set (training data, held-out photos) read from a folder or shards, decoded and split
"""
