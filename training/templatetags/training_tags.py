"""Small display helpers for the run pages."""

from django import template

register = template.Library()


@register.filter
def metric(point: dict, key: str) -> str:
    """A metric value of one series point, rounded for a table; blank when this point lacks it."""
    value = point.get(key)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@register.filter
def num(value) -> str:
    """Floats to four significant digits, lists of floats likewise; anything else as text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) <= 20:
        return ", ".join(num(v) for v in value)
    if isinstance(value, list):
        return f"{len(value)} values"
    return str(value)


@register.filter
def thousands(value) -> str:
    """1307 -> "1,307"."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)
