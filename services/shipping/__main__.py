"""``python -m services.shipping``: run the shipping service until SIGTERM."""

from __future__ import annotations

from events.service import run_service
from events.settings import get_settings
from services.shipping.service import build

if __name__ == "__main__":
    run_service(build, get_settings())
