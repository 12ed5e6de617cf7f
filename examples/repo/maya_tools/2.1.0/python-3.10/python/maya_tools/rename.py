"""Batch-rename helpers (no Maya needed to import)."""


def padded(prefix, index, width=3):
    """Return e.g. 'ctrl_007' for padded('ctrl', 7)."""
    return "%s_%0*d" % (prefix, width, index)


def rename_all(names, prefix):
    return [padded(prefix, i) for i, _ in enumerate(names, 1)]
