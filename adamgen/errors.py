"""adamgen's exceptions: every user mistake surfaces as one of these, with a message that names the problem."""


class AdamgenError(Exception):
    """Base class of every error adamgen raises on purpose."""


class SpecError(AdamgenError, ValueError):
    """A malformed spec: an undeclared symbol, a missing update, an expression no target can compile, ..."""


class GenerateError(AdamgenError):
    """Code generation or loading failed for a reason outside the spec (an unknown variant, an unwritable folder, ...)."""
