class ServingError(Exception):
    """A wrong-state or invalid request in serving; views and the API map it to a 4xx with its text."""


class AmbiguousModel(ServingError):
    """A ``/v1`` model name that several of the caller's live deployments answer to."""

    def __init__(self, model: str, choices: list[str]) -> None:
        super().__init__(f"The model `{model}` is deployed in several of your projects; name one of: "
                         f"{', '.join(choices)}")
        self.model, self.choices = model, choices
