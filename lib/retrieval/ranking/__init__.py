"""Learning to rank the search listings: an XGBoost stage on Spark, then a DNN reranker of the top
``rerank_k`` with metric-driven losses.

- :mod:`.losses`: NDCGLoss2++, NeuralNDCG, ListNet, RankNet (one module each, allRank's signature).
- :mod:`.evaluation`: nDCG@k and MRR of slates, the conventions every ranker is scored by.
- :mod:`.dnn`: the reranker and its slates; :mod:`.worker`: its training process and ``fit_reranker``.
- :mod:`.benchmark` (pure) and :mod:`.spark_benchmark`: the LTR benchmark on SVMlight files
  (:mod:`.svmlight`) beside LightGBM.
- Spark glue: :mod:`.spark_ranker` (query groups for SparkXGBRanker, text vectors, slates, scoring,
  metrics), :mod:`.spark_train` (train_ranker's two stages).

From the encoder it takes only the text features (``encoder.features``, ``encoder.model.text_vectors``;
tests/test_house_plan.py checks it); the shared training code is ``retrieval.training``.
"""
