"""advise: a search over resize pipelines on Optuna's ask-and-tell, answered by the store (training what it lacks)
or replayed from a stored grid."""
