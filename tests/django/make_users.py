"""Makes a Django 5.1 deployment's users, the way it would, for identity's import tests.

Usage: make_users.py OUT_DIR PASSWORD

Writes OUT_DIR/db.sqlite3 (a migrated Django database) and OUT_DIR/users.json
(`manage.py dumpdata auth.user`): one account per password hasher Django ships that
identity reads, each at Django's default cost, and one with an unusable password.
"""

import datetime
import os
import sys

import django
from django.conf import settings

out_dir, password = sys.argv[1], sys.argv[2]
settings.configure(
    SECRET_KEY="django-insecure-import-test-key",
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(out_dir, "db.sqlite3"),
        }
    },
    USE_TZ=True,
    PASSWORD_HASHERS=[
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
        "django.contrib.auth.hashers.BCryptPasswordHasher",
    ],
)
django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0)
hashers = ["pbkdf2_sha256", "pbkdf2_sha1", "argon2", "bcrypt_sha256", "bcrypt"]
for n, hasher in enumerate(hashers):
    user = User.objects.create(
        id=100 + n,
        username=hasher,
        email=User.objects.normalize_email(f"{hasher}@Example.COM"),
        first_name=hasher.title(),
        date_joined=datetime.datetime(2024, 1, 1 + n, tzinfo=datetime.timezone.utc),
    )
    user.password = make_password(password, hasher=hasher)
    user.save()
nobody = User.objects.create(id=200, username="nobody", email="nobody@example.com")
nobody.set_unusable_password()
nobody.save()
call_command("dumpdata", "auth.user", output=os.path.join(out_dir, "users.json"))
