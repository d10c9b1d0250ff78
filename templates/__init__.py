"""Jinja2 templates of the generated modules, one per target, all extending base.py.j2."""
