from django.apps import AppConfig


class TuneloopConfig(AppConfig):
    """Holds the project-wide management commands (`up`, `load_demo`) and the health check."""

    name = "config"
    label = "tuneloop"
    verbose_name = "Tuneloop"
