-- Event verification: when set, every event must be signed with this secret.
ALTER TABLE accounts ADD COLUMN verification_secret text;
