"""Dashboards of a project: progress, label quality, and training (the training view lives in that app)."""

from django.urls import path

from annotation import dashboard_views
from training import dashboard_views as training_dashboard_views

app_name = "dashboards"

urlpatterns = [
    path("projects/<slug:slug>/dashboard/", dashboard_views.dashboard, name="project"),
    path("projects/<slug:slug>/dashboard/quality/", dashboard_views.quality, name="quality"),
    path("projects/<slug:slug>/dashboard/training/", training_dashboard_views.training_dashboard, name="training"),
]
