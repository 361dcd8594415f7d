from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.run_list, name="run-list"),
    path("runs/new", views.launch, name="launch"),
    path("runs/<int:run_id>", views.run_page, name="run-page"),
    path("runs/<int:run_id>/cancel", views.run_cancel, name="run-cancel"),
    path("runs/<int:run_id>/resume", views.run_resume, name="run-resume"),
    path("api/runs/<int:run_id>", views.run_api, name="run-api"),
    path("api/runs/<int:run_id>/nodes/<int:node_id>", views.node_api, name="node-api"),
    path("healthz", views.healthz, name="healthz"),
]
