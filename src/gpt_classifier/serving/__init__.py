"""Classification over HTTP: a FastAPI app around one ``TextClassifier`` and a batching worker."""

from .app import create_app as create_app
