"""recommender_app: the public recommendation API (GET /recommend, POST /events, health)."""
