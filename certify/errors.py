"""The package's one exception tree.

Every error a user can cause (a bad file, a wrong shape, an unknown name) is a
:class:`CertifyError`; the CLI turns each into one line on stderr and exit code 2.
Backend errors are re-raised ``from`` the original exception.
"""


class CertifyError(Exception):
    """Base class: something about the input or the environment is wrong."""


class ModelLoadError(CertifyError):
    """A checkpoint or data file is missing, unreadable or not in a supported format."""


class UnsupportedLayerError(ModelLoadError):
    """A checkpoint holds a layer or operation certify does not model."""


class ShapeError(CertifyError):
    """Arrays whose shapes do not fit together (data vs layer 1, layer l vs l+1, labels vs output)."""


class InvalidValueError(CertifyError):
    """NaN/inf, labels outside the loss's domain, empty data, a negative tolerance, ..."""


class UnknownNameError(CertifyError):
    """An activation or loss name certify does not know, or a malformed parameter in it."""


class MissingExtraError(CertifyError):
    """An optional dependency is not installed; the message names the pip extra."""


class SolverError(CertifyError):
    """A solver failed in a way that is not a normal "inconclusive" outcome."""


class CertificateError(CertifyError):
    """A certificate file is malformed or does not belong to the given model and data."""


class AssumedActivationWarning(UserWarning):
    """The checkpoint does not record its hidden activation and none was given: relu is assumed.

    A PyTorch state dict never records it (the activation is code, not a tensor), nor does an
    ``.npz`` without an ``activation`` array or a ``.safetensors`` file without that metadata entry.
    The answer is then about the ReLU network with those weights; if the network was trained with
    another activation, pass it (``--activation`` / ``activation=``).
    """
