"""incremental_trainer: learns the GMF model from the ``interactions`` stream in real time.

``python -m services.incremental_trainer`` runs one consumer-group member: micro-batches by
size and time, prequential evaluation then ISGD per batch, publishing to MongoDB, Redis and
``item-vectors``, atomic snapshots with the offsets they reflect (see ``service.py``).
"""
