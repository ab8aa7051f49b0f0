class ServingError(Exception):
    """A wrong-state or invalid request in serving; views and the API map it to a 4xx with its text."""
