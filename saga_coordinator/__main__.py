"""``python -m saga_coordinator``: run the saga coordinator until SIGTERM."""

from __future__ import annotations

from events.service import run_service
from events.settings import get_settings
from saga_coordinator.service import build


def main() -> None:
    """Run the coordinator with the settings from the environment."""
    run_service(build, get_settings())


if __name__ == "__main__":
    main()
