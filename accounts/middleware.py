"""Login everywhere: Django's LoginRequiredMiddleware (pages redirect to the login form), with
the JSON API answering 401 instead of a redirect a script could not follow."""

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import JsonResponse


class LoginRequired(LoginRequiredMiddleware):
    def handle_no_permission(self, request, view_func):
        if request.path.startswith("/api/"):
            return JsonResponse({"error": "login required"}, status=401)
        return super().handle_no_permission(request, view_func)
