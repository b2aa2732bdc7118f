"""The add-on's settings (resources/settings.xml), read once when an entry point starts."""

DEFAULT_PINPAD_PROFILE = "Tickets"


class Settings:
    """What resources/settings.xml lets the user choose, with the same defaults."""

    def __init__(
        self,
        pinpad_on_login=True,
        pinpad_profile=DEFAULT_PINPAD_PROFILE,
        time_left_on_start=True,
        relay_warnings=True,
    ):
        self.pinpad_on_login = pinpad_on_login
        self.pinpad_profile = pinpad_profile
        self.time_left_on_start = time_left_on_start
        self.relay_warnings = relay_warnings

    @classmethod
    def read(cls, get_bool, get_string):
        """Settings from Kodi's getters; a setting that cannot be read keeps its default."""
        defaults = cls()

        def read_bool(setting_id, default):
            try:
                return bool(get_bool(setting_id))
            except Exception:  # noqa: BLE001 - an unreadable setting must not stop the service
                return default

        def read_string(setting_id, default):
            try:
                value = get_string(setting_id)
            except Exception:  # noqa: BLE001
                return default
            return value if isinstance(value, str) else default

        return cls(
            pinpad_on_login=read_bool("pinpad_on_login", defaults.pinpad_on_login),
            pinpad_profile=read_string("pinpad_profile", defaults.pinpad_profile),
            time_left_on_start=read_bool("time_left_on_start", defaults.time_left_on_start),
            relay_warnings=read_bool("relay_warnings", defaults.relay_warnings),
        )

    def is_pinpad_profile(self, profile):
        """Is `profile` the PIN-pad profile? Kodi compares profile names case-insensitively."""
        wanted = (self.pinpad_profile or "").strip()
        return bool(wanted) and isinstance(profile, str) and profile.strip().casefold() == wanted.casefold()

    def __repr__(self):
        return "Settings(%r)" % (self.__dict__,)
