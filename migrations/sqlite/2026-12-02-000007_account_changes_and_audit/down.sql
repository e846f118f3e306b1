DROP TABLE audit_events;
DROP TABLE email_changes;
