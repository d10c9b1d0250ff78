"""Code that runs inside generated modules, kept here as plain Python: each module is inlined verbatim into the generated modules that need it."""
