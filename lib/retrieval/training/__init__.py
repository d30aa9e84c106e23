"""What every training shares (the encoder, the session encoder, the reranker DNNs, the image encoder).

- :mod:`.feed`: parquet rows -> training batches, the same number of steps on every rank (Arrow or
  Petastorm; the model's batch builder is an argument).
- :mod:`.loop`: :func:`~.loop.run_epochs`, the one epoch loop (progress lines, cross-rank totals,
  the history every stage's metrics show).
- :mod:`.distributed`: a training process's set-up from its launcher's environment, the DDP wrap, the
  cross-rank epoch totals (plain torch).
- :mod:`.checkpoints`: a checkpoint per epoch, resume, the final save on rank 0.
- :mod:`.models`: one ``save_model`` / ``load_model`` (``state_dict`` + JSON config, loaded with
  ``weights_only=True``).
- :mod:`.spark_launch`: running a worker in TorchDistributor processes, with retries from the last
  checkpoint (the only module here that imports pyspark).
- :mod:`.spark_inference`: a trained model on the executors (broadcast bytes, one model per Python
  worker, the task's GPU).

A model package (``encoder``, ``ranking``, ``visual``) keeps its model, losses and training step, and
its worker: the function each training process runs, built from these pieces.
"""
