"""The operator console (/console): server-rendered pages over what Postgres holds, for
admins; its templates and static files live beside its modules."""
