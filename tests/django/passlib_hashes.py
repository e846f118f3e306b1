"""Prints Django-format hashes of PASSWORD as passlib makes them, one `name hash` a line.

Usage: passlib_hashes.py PASSWORD

passlib writes these formats its own way (other salts and costs than Django's defaults, and
argon2i rather than argon2id), so they check identity's reading of the formats
independently of Django's code. Its bcrypt variants do not run on current bcrypt releases.
"""

import sys

from passlib import hash as passlib_hash

password = sys.argv[1]
for name in ["django_pbkdf2_sha256", "django_pbkdf2_sha1", "django_argon2"]:
    print(name, getattr(passlib_hash, name).hash(password))
