class TrainingError(Exception):
    """A wrong-state or invalid request on a run, snapshot or model version; the API maps it to 4xx."""
