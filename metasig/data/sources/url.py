"""`source: url`: one table downloaded from a URL with a required sha256, through the shared downloader.

The file lands in the download cache (`metasig.data.cache`, keyed by the URL; content already cached
under another URL is linked, not downloaded again), so a second run downloads nothing. The transfer is
retried, resumed and written to a part file that is renamed into place only after its sha256 matches:
a failed or corrupt download never leaves a file in the cache.
"""

import re

from metasig.data import download
from metasig.data.cache import file_name  # noqa: F401  (the file name of a URL, used by the sources)
from metasig.errors import InputError

RETRIES = 3  # extra attempts after a failure that made no progress (network, HTTP 5xx/429)
BACKOFF = 1.0  # seconds before the first retry, doubled for each further one
TIMEOUT = 60  # seconds without data before a connection attempt is abandoned


def fetch(
    url,
    sha256,
    cache_dir="cache",
    config_file="config",
    field="url",
    sha_field="sha256",
    retries=RETRIES,
    progressbar=None,
    timeout=TIMEOUT,
):
    """Download `url` (unless cached) and return the local path of the verified file.

    Errors name the config file and field, and the URL in their problem."""
    sha = str(sha256).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise InputError(config_file, sha_field, f"not a sha256 hex digest: {sha256!r}")
    try:
        return download.fetch_url(
            url,
            cache_dir,
            f"sha256:{sha}",
            retries=retries,
            backoff=BACKOFF,
            timeout=timeout,
            progress=progressbar,
            field=field,
            config_file=config_file,
            checksum_field=sha_field,
        )
    except InputError as exc:
        if exc.file == str(config_file):
            raise
        raise InputError(config_file, exc.field, f"download of {url} failed: {exc.problem}") from exc
