"""Sphinx extension of the book: leave out namedtuple fields' generated docstrings.

A ``NamedTuple`` field's docstring is "Alias for field number N"; autodoc would
list it beside the field's description in the class's "Attributes" section,
which Sphinx then reports as a duplicate description.
"""


def _skip_namedtuple_aliases(app, what, name, obj, skip, options):
    doc = getattr(obj, "__doc__", None) or ""
    if what == "class" and doc.startswith("Alias for field number"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_namedtuple_aliases)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
