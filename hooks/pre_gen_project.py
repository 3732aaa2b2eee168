"""Check the answers before cookiecutter writes any file of the project.

A bad answer stops the bake with one line on stderr that starts with ``ERROR:`` and exit status 1. Cookiecutter has
already created the (empty) project folder when this hook runs, and removes it again when the hook fails, so nothing
is left behind.
"""

import json
import re
import sys

# Each answer is rendered with ``tojson``: inside a JSON string a quote can only appear as \", so whatever quotes,
# backslashes or code an answer holds, it cannot close the raw string below and run as Python. json.loads then gives
# back exactly what was typed, and true/false as booleans.
ANSWERS = json.loads(
    r"""
{
    "project_slug": {{ cookiecutter.project_slug | tojson }},
    "author_email": {{ cookiecutter.author_email | tojson }},
    "routine_pytorch": {{ cookiecutter.routine_pytorch | tojson }},
    "routine_ignite": {{ cookiecutter.routine_ignite | tojson }},
    "routine_fastai": {{ cookiecutter.routine_fastai | tojson }},
    "use_smtp_notifications": {{ cookiecutter.use_smtp_notifications | tojson }},
    "use_docker": {{ cookiecutter.use_docker | tojson }},
    "use_hyperparameter_search": {{ cookiecutter.use_hyperparameter_search | tojson }}
}
"""
)

ROUTINES = ("routine_pytorch", "routine_ignite", "routine_fastai")

# The slug names the project folder, the pip distribution and the Docker image. Runs of lowercase letters and digits
# joined by single "-" or "_", starting with a letter, is valid for all three (Docker refuses "--_", a leading or a
# trailing separator; pip refuses a trailing one).
SLUG_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
SLUG_RULE = (
    "lowercase letters, digits, '-' and '_', starting with a letter and ending with a letter or digit, "
    "no two separators in a row (e.g. 'unet_seg')"
)

# Deliberately loose: one "@", no spaces, a dot in the domain. Catches typos, not every RFC 5322 corner.
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def is_on(value) -> bool:
    """Booleans are real booleans in cookiecutter >= 2.7; accept the strings an older caller might pass."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "t", "yes", "y", "on"}
    return bool(value)


def find_problem(answers: dict) -> str | None:
    """Return a one-line description of the first bad answer, or None when all answers are good."""
    slug = answers["project_slug"]
    if not SLUG_PATTERN.fullmatch(slug):
        return f"project_slug {slug!r} is not a valid project name: use {SLUG_RULE}."

    email = answers["author_email"]
    if not EMAIL_PATTERN.fullmatch(email):
        return f"author_email {email!r} is not an e-mail address (expected name@domain.tld)."

    if not any(is_on(answers[name]) for name in ROUTINES):
        return f"choose at least one training routine ({', '.join(ROUTINES)})."

    return None


def main() -> int:
    problem = find_problem(ANSWERS)
    if problem is None:
        return 0
    print(f"ERROR: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
