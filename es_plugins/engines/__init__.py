"""The engines that apply a method to a model: ``sparsify`` (the one entry point, one-shot),
``training`` (the Sparsifier that keeps masks through training), ``lottery`` (IMP with
rewinding), ``calibration`` (block-by-block activations), ``outofcore`` (checkpoints larger
than memory), ``sharding``/``distributed`` (FSDP and DDP), ``merge`` (LoRA), and the device,
memory helpers they share."""
