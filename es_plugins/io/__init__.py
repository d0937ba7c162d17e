"""Everything read from or written to disk, each file treated as untrusted input: model
arguments (``assets``), checkpoints (``checkpoint``, ``hf_config``), safetensors indexes and
headers (``weight_files``), data sets (``datasets``), atomic outputs (``output``) and the
files that travel with a pruned model (``artifacts``)."""
