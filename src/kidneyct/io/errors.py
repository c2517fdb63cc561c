class ImageReadError(Exception):
    """A file that cannot be turned into a CT slice. The message names the file and the problem."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
