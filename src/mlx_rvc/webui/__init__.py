"""The web app (``mlx-rvc ui``): a Gradio page over the public API.

Needs the ``ui`` extra (``pip install 'mlx-rvc[ui]'``). :mod:`.engine` holds everything that is not
about widgets (model caches, the conversion queue, one job) and imports no Gradio.
"""

from __future__ import annotations


def build_app(engine=None):
    """The Gradio Blocks of the page (see :func:`mlx_rvc.webui.app.build_app`)."""
    from .app import build_app as build

    return build(engine)


def launch(**kwargs):
    """Build and serve the page (see :func:`mlx_rvc.webui.app.launch`)."""
    from .app import launch as serve

    return serve(**kwargs)
