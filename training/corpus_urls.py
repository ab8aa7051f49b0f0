from django.urls import path

from training import corpus_views

urlpatterns = [
    path("projects/<slug:slug>/corpora/", corpus_views.corpora, name="corpora"),
    path("projects/<slug:slug>/corpora/from-demonstrations/", corpus_views.corpus_demonstrations,
         name="corpus-demonstrations"),
    path("projects/<slug:slug>/corpora/<int:pk>/download/", corpus_views.corpus_download, name="corpus-download"),
]
