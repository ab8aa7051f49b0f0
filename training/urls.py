from django.urls import path

from training import api, views

app_name = "training"

P = "projects/<slug:slug>/"
A = "api/projects/<slug:slug>/"

urlpatterns: list = [
    path(P + "runs/", views.runs_page, name="runs"),
    path(P + "runs/autostart/", views.autostart_view, name="autostart"),
    path(P + "runs/<int:run_id>/", views.run_page, name="run"),
    path(P + "runs/<int:run_id>/cancel/", views.run_cancel_view, name="run-cancel"),
    path(P + "models/", views.models_page, name="models"),
    path(P + "models/<slug:name>/", views.model_page, name="model"),
    path(P + "snapshots/", views.snapshots_page, name="snapshots"),
    path(P + "snapshots/<int:snapshot_id>/<str:filename>", views.snapshot_download, name="snapshot-download"),
    path(P + "exports/<str:fmt>.<str:file_format>", views.export_download, name="export"),
    path(A + "snapshots/", api.SnapshotList.as_view(), name="api-snapshots"),
    path(A + "snapshots/<int:snapshot_id>/", api.SnapshotDetail.as_view(), name="api-snapshot"),
    path(A + "snapshots/<int:snapshot_id>/download/", api.SnapshotDownload.as_view(), name="api-snapshot-download"),
    path(A + "exports/<str:fmt>.<str:file_format>", api.ExportDownload.as_view(), name="api-export"),
    path(A + "runs/", api.RunList.as_view(), name="api-runs"),
    path(A + "runs/<int:run_id>/", api.RunDetail.as_view(), name="api-run"),
    path(A + "runs/<int:run_id>/cancel/", api.RunCancel.as_view(), name="api-run-cancel"),
    path(A + "models/", api.ModelList.as_view(), name="api-models"),
    path(A + "models/<slug:name>/", api.ModelDetail.as_view(), name="api-model"),
]
