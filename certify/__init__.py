"""certify: prove whether a trained network's parameters are a local minimum of its training loss.

>>> import certify
>>> sorted(v.value for v in certify.Verdict)
['inconclusive', 'local_min', 'not_stationary', 'saddle']
"""

__version__ = "0.1.0"

import time as _time  # noqa: E402

#: when certify was first imported: the command's budget (``certify check --time-limit``) counts from
#: here, before the imports of numpy, scipy and the rest
_IMPORTED = _time.perf_counter()

from .data import Dataset, Problem  # noqa: E402
from .errors import (CertificateError, CertifyError, InvalidValueError, MissingExtraError,  # noqa: E402
                     ModelLoadError, ShapeError, SolverError, UnknownNameError, UnsupportedLayerError)
from .network import Activation, Network  # noqa: E402
from .report import Report, Verdict  # noqa: E402
from .loaders import load_data, load_model  # noqa: E402
from .driver import check  # noqa: E402
from .refute import escape  # noqa: E402
from .verify import VerifyResult, verify  # noqa: E402

__all__ = [
    "check", "escape", "verify", "VerifyResult", "load_model", "load_data", "Network", "Activation", "Dataset", "Problem", "Report", "Verdict",
    "CertifyError", "ModelLoadError", "UnsupportedLayerError", "ShapeError", "InvalidValueError",
    "UnknownNameError", "MissingExtraError", "SolverError", "CertificateError", "__version__",
]
