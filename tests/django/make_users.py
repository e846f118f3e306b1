"""Makes a Django 5.1 deployment's users, the way it would, for identity's import tests.

Usage: make_users.py OUT_DIR PASSWORD

Writes OUT_DIR/db.sqlite3 (a migrated Django database) and OUT_DIR/users.json
(`manage.py dumpdata auth.user`): one account per password hasher Django ships that
identity reads, each at Django's default cost, and one with an unusable password. Then
OUT_DIR/reset_links.txt: `uidb64 token` lines of password reset links Django would mail the
pbkdf2_sha256 account, one made now and one made four days ago;
OUT_DIR/activation_link.txt: the `uidb64 token` of the link Django would mail the account
that registered and never activated (inactive, as the seed keeps it). And
OUT_DIR/refresh_token.txt: a refresh token simplejwt issued that account at sign-in, and
OUT_DIR/blacklisted_token.txt: one it issued and then blacklisted (a logout). The dump holds
simplejwt's blacklist beside the users.
"""

import datetime
import os
import sys

import django
from django.conf import settings

out_dir, password = sys.argv[1], sys.argv[2]
settings.configure(
    SECRET_KEY="django-insecure-import-test-key",
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "rest_framework_simplejwt.token_blacklist",
    ],
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
from django.contrib.auth.tokens import default_token_generator  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils.encoding import force_bytes  # noqa: E402
from django.utils.http import urlsafe_base64_encode  # noqa: E402

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
# Registered and never activated: the seed keeps such accounts inactive.
pending = User.objects.create(
    id=150, username="pending", email="pending@example.com", is_active=False
)
pending.password = make_password(password, hasher="pbkdf2_sha256")
pending.save()
nobody = User.objects.create(id=200, username="nobody", email="nobody@example.com")
nobody.set_unusable_password()
nobody.save()

ada = User.objects.get(username="pbkdf2_sha256")
uidb64 = urlsafe_base64_encode(force_bytes(ada.pk))
fresh = default_token_generator.make_token(ada)
now = default_token_generator._num_seconds(default_token_generator._now())
stale = default_token_generator._make_token_with_timestamp(
    ada, now - 4 * 86400, default_token_generator.secret
)
with open(os.path.join(out_dir, "reset_links.txt"), "w") as links:
    links.write(f"{uidb64} {fresh}\n{uidb64} {stale}\n")
with open(os.path.join(out_dir, "activation_link.txt"), "w") as link:
    pending_uid = urlsafe_base64_encode(force_bytes(pending.pk))
    link.write(f"{pending_uid} {default_token_generator.make_token(pending)}\n")

from rest_framework_simplejwt.tokens import RefreshToken  # noqa: E402

with open(os.path.join(out_dir, "refresh_token.txt"), "w") as refresh:
    refresh.write(str(RefreshToken.for_user(ada)))
blacklisted = RefreshToken.for_user(ada)
blacklisted.blacklist()
with open(os.path.join(out_dir, "blacklisted_token.txt"), "w") as logged_out:
    logged_out.write(str(blacklisted))
call_command(
    "dumpdata", "auth.user", "token_blacklist", output=os.path.join(out_dir, "users.json")
)
