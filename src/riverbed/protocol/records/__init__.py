"""RecordBatch v2 (magic 2): a view over bytes, CRC-32C, record encoding and compression codecs."""
