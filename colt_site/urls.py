from django.urls import path

from dashboard import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("api/runs/<int:run_id>", views.run_api, name="run-api"),
]
