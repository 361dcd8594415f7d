"""The Celery app: Redis as broker, one queue per measurement target (``llvm``, ``cuda-sm90``...).

A worker on a measurement host consumes its target's queue:

    celery -A colt_site worker -Q llvm --concurrency 1
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "colt_site.settings")

app = Celery("colt")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["search"])
