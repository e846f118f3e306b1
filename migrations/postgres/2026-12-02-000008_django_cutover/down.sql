DROP TABLE django_refresh_exchanges;
DROP TABLE django_link_states;
