"""Formatting the reports of several stages share (a leaf: editing one report's layout reruns only
that report's stage)."""


def hours_minutes(hours: float) -> str:
    minutes = round(hours * 60)
    return f"{minutes // 60}:{minutes % 60:02d}"
