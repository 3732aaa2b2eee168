"""E-mail notifications when a run ends or fails (see :mod:`utils.notify.smtp`).

``settings.py`` reads and checks the ``SMTP_*`` settings, ``messages.py`` writes the e-mails, ``conversation.py``
talks to the server once and ``smtp.py`` sends (``SMTPNotifier``, ``notify_run``, ``python -m utils.notify.smtp
--test``). Import from those modules (``from utils.notify.smtp import SMTPNotifier``). This file re-exports nothing
on purpose: ``python -m utils.notify.smtp`` would otherwise import the module twice (once here, once as ``__main__``).
"""
