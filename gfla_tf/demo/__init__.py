"""``gfla demo``: a pose editor in the browser over one loaded model.

One process serves a static page (HTML, CSS and JavaScript shipped in ``static/``: no CDN,
no build step) and a small JSON API under ``/api/v1/`` (see docs/demo.md):

* ``service``: the model behind the API. Request validation with size limits checked before
  anything is decoded, and inference serialised by a lock, through ``gfla generate``'s own
  resize path.
* ``gallery``: target poses and sample photos from an annotation CSV or a dataset root.
* ``app``: the Starlette (ASGI) application; ``gfla_tf.cli.demo`` serves it with uvicorn.
"""

from gfla_tf.demo.app import create_app
from gfla_tf.demo.gallery import Gallery, load_gallery
from gfla_tf.demo.service import (
    MAX_BODY_BYTES,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    MAX_POSE_FILE_BYTES,
    DemoService,
    RequestError,
    default_model_path,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "MAX_POSE_FILE_BYTES",
    "DemoService",
    "Gallery",
    "RequestError",
    "create_app",
    "default_model_path",
    "load_gallery",
]
