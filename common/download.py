"""Downloads with progress, HTTP Range resume, integrity checks and atomic completion.

`download_file` writes to `<dest>.part`, resumes it with a Range request when the server allows, verifies size/sha256
(or a caller's check, e.g. the dataset zip's member list), and only then renames it to `dest`: a file at `dest` is always
complete. Used for the dataset (common.dataset_zip), torchvision weights (common.pretrained), Darknet files (partC).
"""
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from common.errors import UserError

CHUNK = 1 << 20


def sha256_of(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def download_file(url, dest, sha256=None, size=None, progress=True, hint="", verify=None):
    """Download `url` to `dest` (resuming `dest.part`), verify, then rename atomically.

    Completeness: the server's Content-Length, else the expected `size`/`sha256`, else `verify`
    (a callable that raises UserError for an incomplete file, e.g. a zip's member list). A download
    that none of these can vouch for is never renamed into place as complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    response = _request_rest_of(url, part, hint)
    if response is not None:  # None: the server answered 416, an earlier run downloaded it whole
        with response:
            _stream_into(part, response, url, size, progress)
    length_known = response is not None and response.headers.get("Content-Length") is not None
    _check_complete(part, url, size, sha256, verify, length_known)
    os.replace(part, dest)
    return dest


def _request_rest_of(url, part, hint):
    """The server's response from the end of `part` on (a Range request), or None when `part` is already whole."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "inat-lab"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # the partial file is already complete (or too long)
            return None
        raise UserError(f"download of {url} failed: HTTP {err.code} {err.reason}. {hint}".strip()) from None
    except (urllib.error.URLError, OSError) as err:
        raise UserError(f"cannot reach {url} ({getattr(err, 'reason', err)}): you seem to be offline. {hint}".strip()) from None


def _stream_into(part, response, url, size, progress):
    """Append the response to `part` (rewrite it if the server ignored Range), with a progress bar."""
    start = part.stat().st_size if part.exists() and response.status == 206 else 0  # 200: start again from byte 0
    length = response.headers.get("Content-Length")
    total = start + int(length) if length is not None else size
    with open(part, "ab" if start else "wb") as out, tqdm(
        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
        desc=f"download {part.stem}", disable=not progress,
    ) as bar:
        try:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
        except (OSError, urllib.error.URLError, http.client.HTTPException) as err:
            raise UserError(f"download of {url} was interrupted ({err}); run the same command again to resume") from None
    if length is not None and part.stat().st_size != total:
        raise UserError(f"download of {url} stopped at {part.stat().st_size} of {total} bytes; run the same command "
                        f"again to resume")


def _check_complete(part, url, size, sha256, verify, length_known):
    """UserError unless `part` has the expected size and sha256, or (sent without a length) passes `verify`."""
    if size is not None and part.stat().st_size != size:
        got = part.stat().st_size
        part.unlink()  # ours, and of no use: the next run downloads afresh
        raise UserError(f"{url} gave {got} bytes, expected {size}; the partial file was removed, try again")
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256:
            part.unlink()
            raise UserError(f"{url} failed its sha256 check (got {got[:12]}…, expected {sha256[:12]}…); removed it, try again")
    if not length_known and sha256 is None and size is None:
        # Without a length, a dropped connection looks like the end of the file: only `verify` can tell.
        if verify is None:
            raise UserError(f"{url} sent no length and nothing else can check the file; kept as {part} — verify "
                            f"it yourself and rename it to {part.stem}")
        try:
            verify(part)
        except UserError as err:  # kept as .part: a dropped connection is resumed by the next run
            raise UserError(f"the download of {url} is incomplete or damaged ({err.message}); run the same command "
                            f"again to resume it, or delete {part} to start over") from None
