from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, register_converter

from colt_site.converters import IdConverter
from dashboard import views

register_converter(IdConverter, "id")

urlpatterns = [
    path("", views.run_list, name="run-list"),
    path("runs/new", views.launch, name="launch"),
    path("runs/<id:run_id>", views.run_page, name="run-page"),
    path("runs/<id:run_id>/cancel", views.run_cancel, name="run-cancel"),
    path("runs/<id:run_id>/resume", views.run_resume, name="run-resume"),
    path("runs/<id:run_id>/costs", views.run_costs, name="run-costs"),
    path("runs/<id:run_id>/ledger.csv", views.run_ledger_csv, name="run-ledger"),
    path("runs/<id:run_id>/download/<str:what>", views.download, name="run-download"),
    path("models", views.model_list, name="model-list"),
    path("models/<id:model_run_id>", views.model_page, name="model-page"),
    path("models/<id:model_run_id>/cancel", views.model_cancel, name="model-cancel"),
    path("models/<id:model_run_id>/resume", views.model_resume, name="model-resume"),
    path("models/<id:model_run_id>/download/<str:what>", views.model_download, name="model-download"),
    path("api/models/<id:model_run_id>", views.model_api, name="model-api"),
    path("costs", views.team_costs, name="costs"),
    path("costs/ledger.csv", views.team_ledger_csv, name="costs-ledger"),
    path("compare", views.compare, name="compare"),
    path("api/runs", views.runs_api, name="runs-api"),
    path("api/runs/<id:run_id>", views.run_api, name="run-api"),
    path("api/runs/<id:run_id>/nodes/<id:node_id>", views.node_api, name="node-api"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
