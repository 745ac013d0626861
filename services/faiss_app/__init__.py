"""faiss_app: the item index service (exact or ANN inner-product search over item vectors)."""
