from django.urls import path, register_converter

from colt_site.converters import IdConverter

from .consumers import RunConsumer

register_converter(IdConverter, "id")
websocket_urlpatterns = [path("ws/runs/<id:run_id>/", RunConsumer.as_asgi())]
