"""Reports whether the model's own dependency (the tinydep wheel) is importable."""

import importlib.util


def handle(data, context):
    if data is None:
        return None
    spec = importlib.util.find_spec("tinydep")
    if spec is None:
        return [{"tinydep": None} for _ in data]
    import tinydep

    return [{"tinydep": tinydep.VALUE, "at": tinydep.__file__} for _ in data]
