DROP INDEX users_email_prefix;
DROP TABLE audit_events;
DROP TABLE email_changes;
