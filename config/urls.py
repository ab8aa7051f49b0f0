from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config.health import healthz
from config.login import ThrottledLoginView
from config.views import home, loop_report, my_work

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg")), name="favicon"),  # asked on every page
    path("me/", my_work, name="my-work"),
    path("reports/<slug:slug>/", loop_report, name="loop-report"),
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("annotation.urls")),
    path("", include("annotation.api_urls")),
    path("", include("annotation.dashboard_urls")),
    path("", include("training.urls")),
    path("", include("training.corpus_urls")),
    path("", include("serving.urls")),
]
