"""Ids of the add-on's strings in resources/language/resource.language.en_gb/strings.po.

The code shows no text of its own: every word on screen comes from strings.po through these
ids (32000-32999 is Kodi's range for scripts and services).
"""

ADDON_NAME = 32000
ENTER_PIN = 32001
PIN_FORMAT = 32002
AGENT_NOT_RUNNING = 32003
CHECKING_PIN = 32004
NO_ANSWER = 32005

WELCOME_MINUTES = 32010
WELCOME_ONE_MINUTE = 32011
WELCOME = 32012

REASON_UNKNOWN_PIN = 32020
REASON_RATE_LIMITED = 32021
REASON_SERVER_UNREACHABLE = 32022
REASON_KODI_ERROR = 32023
REASON_BAD_REQUEST = 32024

MINUTES_LEFT = 32030
ONE_MINUTE_LEFT = 32031
NO_SESSION = 32032

# Settings (resources/settings.xml refers to these by number).
SETTINGS_CATEGORY = 32100
SETTINGS_GROUP_PIN_PAD = 32101
SETTING_PINPAD_ON_LOGIN = 32102
SETTING_PINPAD_ON_LOGIN_HELP = 32103
SETTING_PINPAD_PROFILE = 32104
SETTING_PINPAD_PROFILE_HELP = 32105
SETTINGS_GROUP_SESSION = 32106
SETTING_TIME_LEFT_ON_START = 32107
SETTING_TIME_LEFT_ON_START_HELP = 32108
SETTING_RELAY_WARNINGS = 32109
SETTING_RELAY_WARNINGS_HELP = 32110

# What the PIN pad says for each `reason` of a failed `kodi_tickets.result`.
REASON_MESSAGES = {
    "unknown_pin": REASON_UNKNOWN_PIN,
    "rate_limited": REASON_RATE_LIMITED,
    "server_unreachable": REASON_SERVER_UNREACHABLE,
    "kodi_error": REASON_KODI_ERROR,
    "bad_request": REASON_BAD_REQUEST,
}
# A reason this add-on does not know yet (a newer agent): the generic "could not be checked".
_UNKNOWN_REASON_MESSAGE = REASON_BAD_REQUEST


def reason_message(reason):
    """The string id shown for a failed result's `reason`."""
    return REASON_MESSAGES.get(reason, _UNKNOWN_REASON_MESSAGE)
