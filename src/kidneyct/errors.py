"""The exceptions kidneyct raises on purpose, all under KidneyCTError, so that callers (the CLI first) can
tell a problem with the input or the environment, reported in one line, from a bug.

Each also keeps the built-in base it had before (ValueError, RuntimeError), so `except ValueError` still
catches a DatasetError.
"""


class KidneyCTError(Exception):
    """Base of every error kidneyct raises about its inputs, files or environment."""


class ImageReadError(KidneyCTError):
    """A file that cannot be turned into a CT slice. The message names the file and the problem."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsupportedFormat(ImageReadError):
    """A file whose content is of a known format kidneyct does not read (TIFF, GIF, a NIfTI upload...)."""


class OverBudget(ImageReadError):
    """A file whose header claims more than the read limits allow (decoded size, side): refused unread."""


class NotRegularFile(ImageReadError):
    """A named pipe, socket or device where a file was expected: never read (a pipe would block forever)."""


class UnsafePath(KidneyCTError, ValueError):
    """A name from outside (a UID from the network, a header value) that would leave its output folder."""


class DatasetError(KidneyCTError, ValueError):
    """The dataset folder cannot serve the requested task (empty, missing or ambiguous classes)."""


class CheckpointError(KidneyCTError, RuntimeError):
    """The file is not a usable kidneyct checkpoint."""


class PretrainedWeightsUnavailable(KidneyCTError, RuntimeError):
    """ImageNet weights could not be obtained (typically: no internet)."""


class DeviceUnavailable(KidneyCTError, RuntimeError):
    """The requested device (e.g. CUDA) is not available on this machine."""


class UploadError(KidneyCTError):
    """A client-side problem with an upload; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)
