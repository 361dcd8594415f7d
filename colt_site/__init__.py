"""COLT's Django project. The Celery app is imported lazily by workers (`-A colt_site.celery`)
and by the task dispatcher, so that web start-up does not pay for it."""
