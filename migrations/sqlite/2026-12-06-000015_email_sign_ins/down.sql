DROP TABLE email_sign_ins;
