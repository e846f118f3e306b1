"""Makes the users of a Django 5.1 deployment with a custom user model that records whether
each proved its address (`is_verified`), for identity's import tests.

Usage: make_custom_users.py OUT_DIR PASSWORD

Writes OUT_DIR/users.json (`manage.py dumpdata accounts.user`): proven@example.com, verified,
and unproven@example.com, active but not verified, both with PASSWORD.
"""

import os
import sys

out_dir, password = sys.argv[1], sys.argv[2]
app_dir = os.path.join(out_dir, "accounts")
os.makedirs(app_dir, exist_ok=True)
open(os.path.join(app_dir, "__init__.py"), "w").close()
with open(os.path.join(app_dir, "models.py"), "w") as models:
    models.write(
        "from django.contrib.auth.models import AbstractUser\n"
        "from django.db import models\n\n\n"
        "class User(AbstractUser):\n"
        "    is_verified = models.BooleanField(default=False)\n"
    )
sys.path.insert(0, out_dir)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    SECRET_KEY="django-insecure-import-test-key",
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "accounts"],
    AUTH_USER_MODEL="accounts.User",
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(out_dir, "db.sqlite3"),
        }
    },
    USE_TZ=True,
    PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"],
)
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

call_command("makemigrations", "accounts", verbosity=0)
call_command("migrate", verbosity=0)
User = get_user_model()
for pk, name, verified in [(300, "proven", True), (301, "unproven", False)]:
    user = User.objects.create(
        id=pk, username=name, email=f"{name}@example.com", is_verified=verified
    )
    user.set_password(password)
    user.save()
call_command("dumpdata", "accounts.user", output=os.path.join(out_dir, "users.json"))
