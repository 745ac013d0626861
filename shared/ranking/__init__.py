"""The recommender's ranking stage: candidate sources → features → ranker → rerank.

One implementation, run by ``services.recommender_app`` (stores in Redis and faiss_app) and by
``scripts.evaluate_stream`` (the same stores kept in memory), so what is measured offline is
what is served. Modules, in request order:

- :mod:`signals`: what the stream tells the ranking stage per batch (co-engagement pairs,
  trending weights, new items), computed once and applied to any store;
- :mod:`co_engagement`: "engaged right after" counts per item, decayed and bounded;
- :mod:`stores`: the :class:`~shared.ranking.stores.RankingStore` protocol and its in-memory
  implementation (the Redis one is :mod:`shared.storage.ranking_store`);
- :mod:`candidates`: one class per candidate source;
- :mod:`features`: the feature vector of each candidate;
- :mod:`ranker`: a linear pairwise (BPR) model over those features;
- :mod:`rerank`: seen items out, filters, diversity, explanations;
- :mod:`pipeline`: the three stages glued together.
"""
