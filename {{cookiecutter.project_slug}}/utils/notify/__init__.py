"""E-mail notifications when a run ends or fails (see :mod:`utils.notify.smtp`).

The code lives in ``utils/notify/smtp.py`` and is imported from there
(``from utils.notify.smtp import SMTPNotifier``). This file re-exports nothing on purpose: ``python -m
utils.notify.smtp`` would otherwise import the module twice (once here, once as ``__main__``).
"""
