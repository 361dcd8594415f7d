"""Template filters shared by the dashboard's pages."""

from django import template

register = template.Library()


@register.filter
def latency(seconds):
    """A latency in the unit a kernel engineer reads it in, as the run page shows it:
    ``4.210 ms``, ``103.2 µs``; ``-`` when there is none."""
    if seconds is None or seconds == "":
        return "-"
    seconds = float(seconds)
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} µs"


@register.filter
def mflop(flops):
    """FLOPs as MFLOP with one decimal (``231.2``)."""
    if flops is None or flops == "":
        return "-"
    return f"{float(flops) / 1e6:.1f}"
