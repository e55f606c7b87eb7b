"""The source video file and slot thumbnails, by video id and slot id only.

Design decisions: no path ever comes from the request: the file is the stored
record's ``uri``, served only when it is a local file with the same content id as
the record (else 404 with the reason); Starlette's ``FileResponse`` answers HTTP
Range requests with 206 and ``Content-Range``, which the player needs to seek.
Thumbnails are the JPEG bytes stored with the live run's slot rows.
"""

from __future__ import annotations

import mimetypes

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from videomem.jobs.serve.params import check_id
from videomem.jobs.serve.security import ClientError
from videomem.jobs.serve.state import shared
from videomem.jobs.serve.video import file_state

__all__ = ["thumbnail", "video_file"]


def _full_id(request: Request) -> str:
    vid = check_id(request.path_params["video_id"])
    if len(vid) < 24:  # media by the whole id only
        raise ClientError(404, f"no video {vid!r}")
    return vid


def video_file(request: Request) -> Response:
    st = shared(request).store
    rec = st.latest(_full_id(request))
    state = file_state(rec)
    if state != "ok":
        raise ClientError(404, f"the file of video {rec.video_id} is {state}: {rec.uri}")
    kind = mimetypes.guess_type(rec.uri)[0] or "application/octet-stream"
    return FileResponse(rec.uri, media_type=kind, headers={"Cache-Control": "no-cache"})


def thumbnail(request: Request) -> Response:
    st = shared(request).store
    rec = st.latest(_full_id(request))
    slot = int(request.path_params["slot"])
    if rec.status != "indexed" or rec.run_id is None:
        raise ClientError(404, f"video {rec.video_id} has no memory")
    where = f"kind = 'slot' AND slot = {slot}"
    rows = [r for part in st.scan_memories([rec.run_id], ["thumbnail"], where=where)
            for r in part.to_pylist()]  # fmt: skip
    if not rows or rows[0]["thumbnail"] is None:
        raise ClientError(404, f"video {rec.video_id} has no thumbnail for slot {slot}")
    headers = {"Cache-Control": "private, max-age=3600", "ETag": f'"{rec.run_id}-{slot}"'}
    return Response(rows[0]["thumbnail"], media_type="image/jpeg", headers=headers)
