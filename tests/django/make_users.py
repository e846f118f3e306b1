"""Makes a Django 5.1 deployment's users, the way it would, for identity's import tests.

Usage: make_users.py OUT_DIR PASSWORD
       make_users.py OUT_DIR PASSWORD --changes NEW_PASSWORD

Writes OUT_DIR/db.sqlite3 (a migrated Django database) and OUT_DIR/users.json
(`manage.py dumpdata auth.user`): one account per password hasher Django ships that
identity reads, each at Django's default cost, and one with an unusable password. Then
OUT_DIR/reset_links.txt: `uidb64 token` lines of password reset links Django would mail the
pbkdf2_sha256 account, one made now and one made four days ago;
OUT_DIR/activation_link.txt: the `uidb64 token` of the link Django would mail the account
that registered and never activated (inactive, as the seed keeps it). And
OUT_DIR/refresh_token.txt: a refresh token simplejwt issued that account at sign-in, and
OUT_DIR/blacklisted_token.txt: one it issued and then blacklisted (a logout), and
OUT_DIR/other_refresh_token.txt: one it issued the bcrypt account. The dump holds
simplejwt's blacklist beside the users. One more account has a zero-width space in its first
name, which identity refuses, so the import skips it: OUT_DIR/skipped_refresh_token.txt is a
refresh token simplejwt issued it.

With --changes, the deployment lives on after a first import, and OUT_DIR/users_changed.json
is its new dump: the pbkdf2_sha256 account moved to moved@example.com, the pbkdf2_sha1 one
changed its password to NEW_PASSWORD, the argon2 one its first name, the bcrypt_sha256 one its
last name, and two people signed up (ids 160 and 161).
"""

import datetime
import os
import sys

import django
from django.conf import settings

out_dir, password = sys.argv[1], sys.argv[2]
changes = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--changes" else None
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

from rest_framework_simplejwt.tokens import RefreshToken  # noqa: E402

if changes is not None:
    moved = User.objects.get(id=100)
    moved.email = "moved@example.com"
    moved.save()
    rehashed = User.objects.get(id=101)
    rehashed.password = make_password(changes, hasher="pbkdf2_sha256")
    rehashed.save()
    User.objects.filter(id=102).update(first_name="Renamed")
    User.objects.filter(id=103).update(last_name="Renamed")
    for pk, name in [(160, "late"), (161, "later")]:
        late = User.objects.create(id=pk, username=name, email=f"{name}@example.com")
        late.password = make_password(password, hasher="pbkdf2_sha256")
        late.save()
    call_command(
        "dumpdata", "auth.user", "token_blacklist",
        output=os.path.join(out_dir, "users_changed.json"),
    )
    sys.exit(0)

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
# identity refuses invisible characters in names, so the import skips this account.
invisible = User.objects.create(
    id=120, username="invisible", email="invisible@example.com", first_name="Zo\u200be"
)
invisible.password = make_password(password, hasher="pbkdf2_sha256")
invisible.save()
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

with open(os.path.join(out_dir, "skipped_refresh_token.txt"), "w") as skipped:
    skipped.write(str(RefreshToken.for_user(invisible)))
with open(os.path.join(out_dir, "refresh_token.txt"), "w") as refresh:
    refresh.write(str(RefreshToken.for_user(ada)))
with open(os.path.join(out_dir, "other_refresh_token.txt"), "w") as other:
    other.write(str(RefreshToken.for_user(User.objects.get(username="bcrypt"))))
blacklisted = RefreshToken.for_user(ada)
blacklisted.blacklist()
with open(os.path.join(out_dir, "blacklisted_token.txt"), "w") as logged_out:
    logged_out.write(str(blacklisted))
call_command(
    "dumpdata", "auth.user", "token_blacklist", output=os.path.join(out_dir, "users.json")
)
