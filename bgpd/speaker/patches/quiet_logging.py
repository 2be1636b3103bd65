"""ExaBGP's ``log.debug`` and ``log.info`` as no-ops when its log level leaves them out (the
``logging`` unit): ExaBGP asks for each call whether the level and the message's source are
enabled, three Python calls deep, and a 599-peer start makes thousands of them (2 to 4 % of
its profile)."""

from __future__ import annotations

from typing import Any

from bgpd.speaker.patches import Unit


def _eat(message: Any, source: Any = "", level: Any = "") -> None:
    pass


def quiet_logging(log_cls: Any, option_cls: Any) -> None:
    """Once ExaBGP has read its log settings (``log.init``), each of ``log.debug`` and
    ``log.info`` whose level is off does nothing: ExaBGP's own would return the same
    nothing after asking ``option.log_enabled`` (the level is set there, once, for every
    source).  A level that is on keeps ExaBGP's method."""
    original_init = log_cls.init
    methods = {"debug": "DEBUG", "info": "INFO"}
    originals = {name: log_cls.__dict__[name] for name in methods}

    def init(env: Any) -> None:
        original_init(env)
        for name, level in methods.items():
            on = option_cls.logit.get(level, False)
            setattr(log_cls, name, originals[name] if on else staticmethod(_eat))

    log_cls.init = staticmethod(init)


def _apply() -> None:
    from exabgp.logger import _log
    from exabgp.logger.option import option

    quiet_logging(_log, option)


UNIT = Unit(
    name="logging",
    contract=(
        ("exabgp.logger", "_log.init", ("env",)),
        ("exabgp.logger", "_log.debug", ("message", "source", "level")),
        ("exabgp.logger", "_log.info", ("message", "source", "level")),
        ("exabgp.logger.option", "option.logit", None),
    ),
    attributes=(),
    apply=_apply,
)
