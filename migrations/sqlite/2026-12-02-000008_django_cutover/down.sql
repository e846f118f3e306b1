DROP TABLE django_blacklisted_refresh;
DROP TABLE django_refresh_exchanges;
DROP TABLE django_link_states;
