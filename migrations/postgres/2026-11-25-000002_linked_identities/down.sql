DROP TABLE linked_identities;
