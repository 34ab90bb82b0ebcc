"""Reference cases with independently derived verdicts (see :mod:`tests.reference.cases`)."""

from tests.reference.cases import CASES, Case, Descent, by_name

__all__ = ["CASES", "Case", "Descent", "by_name"]
