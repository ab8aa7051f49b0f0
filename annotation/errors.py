class AnnotationError(Exception):
    """A wrong-state or invalid request in annotation; views and the API map it to a 4xx with its text."""
